import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OnnxTrainingBackend, DEFAULT_TRAINING_OPTIONS } from '../../client/trainer/onnx-training-backend.js';
import { readSafetensors } from '../../client/trainer/safetensors.js';
import { projectionShape } from '../../client/trainer/model-config.js';
import { isNdpError } from '../../src/protocol/errors.js';
import { MICRO_CONFIG, makeBatch } from './fixtures.js';
import { writeCheckpoint } from './checkpoint-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'ndp-trainer-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const checkpoint = join(dir, 'micro-qwen2');
writeCheckpoint(checkpoint, { ...MICRO_CONFIG, numLayers: 3 });

t.test('loss falls on a fixed batch; the worker leaves the event loop free; the adapter has PEFT keys and shapes', async (t) => {
  const backend = new OnnxTrainingBackend();
  const targets = ['q_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'];
  const info = await backend.init({ ...DEFAULT_TRAINING_OPTIONS, model: checkpoint, device: 'cpu', targetModules: targets, loraRank: 4, loraAlpha: 8, learningRate: 2e-2 });
  t.teardown(() => backend.close());
  t.equal(info.device, 'cpu');
  t.equal(info.vocabSize, MICRO_CONFIG.vocabSize);
  const batch = makeBatch(4, 16, MICRO_CONFIG.vocabSize);
  const losses: number[] = [];
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  let stepMs = 0;
  for (let i = 0; i < 12; i++) {
    const started = performance.now();
    const r = await backend.step(batch);
    stepMs += performance.now() - started;
    t.equal(r.updated, true);
    t.equal(r.optimizerStep, i + 1);
    losses.push(r.loss);
  }
  clearInterval(timer);
  t.ok(ticks > 0, `the event loop ran ${ticks} timer callbacks during ${stepMs.toFixed(0)} ms of steps`);
  t.ok((losses.at(-1) as number) < (losses[0] as number) - 0.05, `loss ${losses[0]?.toFixed(4)} → ${losses.at(-1)?.toFixed(4)}`);
  const evalLoss = await backend.evaluate(batch);
  t.ok(evalLoss.loss < (losses[0] as number), 'evaluate sees the trained adapter');
  const evalAgain = await backend.evaluate(batch);
  t.equal(evalAgain.loss, evalLoss.loss, 'evaluate changes nothing');

  const out = join(dir, 'adapter');
  await backend.saveAdapter(out);
  const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  t.match(config, { peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, target_modules: targets, bias: 'none', base_model_name_or_path: checkpoint });
  const tensors = readSafetensors(readFileSync(join(out, 'adapter_model.safetensors')));
  t.equal(tensors.size, 3 * targets.length * 2, 'one A and one B per layer and target');
  // PEFT's rule: keys are the wrapped model's module paths (base_model.model. + the HF module name)
  // with the adapter name removed, ending in lora_A.weight [r, in] / lora_B.weight [out, r].
  const keyPattern = /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)\.lora_(A|B)\.weight$/;
  for (const [key, tensor] of tensors) {
    const m = keyPattern.exec(key);
    t.ok(m, `${key} follows PEFT's naming`);
    if (!m) continue;
    const [, layer, parent, target, kind] = m;
    t.ok(Number(layer) < 3 && targets.includes(target as string));
    t.equal(parent, ['q_proj', 'k_proj', 'v_proj', 'o_proj'].includes(target as string) ? 'self_attn' : 'mlp');
    const { inFeatures, outFeatures } = projectionShape(MICRO_CONFIG, target as string);
    t.same(tensor.shape, kind === 'A' ? [4, inFeatures] : [outFeatures, 4], `${key} shape`);
  }
  const b0 = tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight');
  t.ok(b0 !== undefined && b0.data.some((x) => x !== 0), 'B moved away from its zero init');
});

t.test('gradient accumulation over 2 micro-batches equals one step on both', async (t) => {
  const { LoraSession } = await import('../../client/trainer/lora-session.js');
  const { randomBaseWeights } = await import('../../client/trainer/base-weights.js');
  const weights = randomBaseWeights(MICRO_CONFIG, 9);
  const lora = { rank: 2, alpha: 4, targets: ['q_proj', 'v_proj'] };
  const a = makeBatch(2, 8, MICRO_CONFIG.vocabSize, 1);
  const b = makeBatch(2, 8, MICRO_CONFIG.vocabSize, 2);
  const both = {
    ...a,
    batchSize: 4,
    inputIds: Int32Array.from([...a.inputIds, ...b.inputIds]),
    attentionMask: Int32Array.from([...a.attentionMask, ...b.attentionMask]),
    labels: Int32Array.from([...a.labels, ...b.labels]),
    positionIds: Int32Array.from([...a.positionIds, ...b.positionIds]),
    documentIds: Int32Array.from([...a.documentIds, ...b.documentIds]),
    tokenCount: a.tokenCount + b.tokenCount,
  };
  const accumulated = new LoraSession({ config: MICRO_CONFIG, weights, lora, device: 'cpu', dtype: 'float64', gradAccum: 2, seed: 3 });
  const single = new LoraSession({ config: MICRO_CONFIG, weights, lora, device: 'cpu', dtype: 'float64', gradAccum: 1, seed: 3 });
  t.teardown(async () => {
    await accumulated.close();
    await single.close();
  });
  // Non-zero B so both A and B gradients matter.
  for (const s of [accumulated, single]) for (const p of s.params) if (p.kind === 'B') s.setParam(p.name, Array.from({ length: p.shape[0] * p.shape[1] }, (_, i) => Math.sin(i) * 0.1));
  const first = await accumulated.microStep(a);
  t.equal(first.updated, false, 'no update after the first micro-batch');
  const second = await accumulated.microStep(b);
  t.equal(second.updated, true);
  const one = await single.microStep(both);
  t.ok(Math.abs((second.gradNorm as number) - (one.gradNorm as number)) < 1e-9, `grad norms ${second.gradNorm} vs ${one.gradNorm}`);
  let worst = 0;
  for (const p of single.params) {
    const x = accumulated.getParam(p.name);
    const y = single.getParam(p.name);
    x.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - (y[i] as number)))));
  }
  t.ok(worst < 1e-9, `parameters agree to ${worst.toExponential(2)}`);
});

t.test('the update graph is clip_grad_norm_ + AdamW (checked against a JS reference, two steps)', async (t) => {
  const ort = (await import('onnxruntime-node')).default;
  const { buildUpdateGraph } = await import('../../client/trainer/lora-graphs.js');
  const { encodeModel } = await import('../../client/trainer/onnx-encoder.js');
  const params = [
    { name: 'p0', layer: 0, target: 'q_proj', kind: 'A' as const, shape: [2, 3] as [number, number], peftKey: 'a' },
    { name: 'p1', layer: 0, target: 'q_proj', kind: 'B' as const, shape: [4, 2] as [number, number], peftKey: 'b' },
  ];
  const session = await ort.InferenceSession.create(encodeModel(buildUpdateGraph(params, 'float64')).model, { graphOptimizationLevel: 'basic' });
  t.teardown(() => session.release());
  const lr = 0.01;
  const wd = 0.1;
  const maxNorm = 0.5;
  const gradScale = 1 / 7;
  const state = params.map((p, k) => {
    const n = p.shape[0] * p.shape[1];
    return { p: Float64Array.from({ length: n }, (_, i) => Math.sin(i + k)), m: new Float64Array(n), v: new Float64Array(n) };
  });
  for (let step = 1; step <= 2; step++) {
    const grads = params.map((p, k) => Float64Array.from({ length: p.shape[0] * p.shape[1] }, (_, i) => Math.cos(3 * i + k + step) * 2));
    const scalar = (x: number) => new ort.Tensor('float64', Float64Array.of(x), []);
    const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {
      learning_rate: scalar(lr),
      grad_scale: scalar(gradScale),
      bias_correction1: scalar(1 - 0.9 ** step),
      bias_correction2: scalar(1 - 0.999 ** step),
      weight_decay: scalar(wd),
      max_grad_norm: scalar(maxNorm),
    };
    params.forEach((p, k) => {
      const st = state[k]!;
      feeds[`param.${p.name}`] = new ort.Tensor('float64', st.p, [...p.shape]);
      feeds[`m.${p.name}`] = new ort.Tensor('float64', st.m, [...p.shape]);
      feeds[`v.${p.name}`] = new ort.Tensor('float64', st.v, [...p.shape]);
      feeds[`grad.${p.name}`] = new ort.Tensor('float64', grads[k]!, [...p.shape]);
    });
    const out = await session.run(feeds);
    // Reference: torch.nn.utils.clip_grad_norm_(max_norm) then torch.optim.AdamW(lr, weight_decay).
    const scaled = grads.map((g) => g.map((x) => x * gradScale));
    const norm = Math.sqrt(scaled.reduce((s, g) => s + g.reduce((a, x) => a + x * x, 0), 0));
    const coef = Math.min(1, maxNorm / (norm + 1e-6));
    t.ok(Math.abs(Number(out.grad_norm?.data[0]) - norm) < 1e-12, `step ${step}: grad norm ${norm.toFixed(6)}`);
    let worst = 0;
    params.forEach((p, k) => {
      const st = state[k]!;
      const g = scaled[k]!;
      for (let i = 0; i < g.length; i++) {
        const gi = g[i]! * coef;
        st.m[i] = 0.9 * st.m[i]! + 0.1 * gi;
        st.v[i] = 0.999 * st.v[i]! + 0.001 * gi * gi;
        const mHat = st.m[i]! / (1 - 0.9 ** step);
        const vHat = st.v[i]! / (1 - 0.999 ** step);
        st.p[i] = st.p[i]! * (1 - lr * wd) - (lr * mHat) / (Math.sqrt(vHat) + 1e-8);
      }
      const got = out[`param_out.${p.name}`]?.data as Float64Array;
      got.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - st.p[i]!))));
      (out[`m_out.${p.name}`]?.data as Float64Array).forEach((x, i) => (worst = Math.max(worst, Math.abs(x - st.m[i]!))));
      (out[`v_out.${p.name}`]?.data as Float64Array).forEach((x, i) => (worst = Math.max(worst, Math.abs(x - st.v[i]!))));
    });
    t.ok(worst < 1e-12, `step ${step}: parameters and moments agree to ${worst.toExponential(2)}`);
  }
});

t.test('refusals: unknown preset, unknown target, vocabulary mismatch, token out of range, unavailable device', async (t) => {
  const tryInit = async (o: Partial<typeof DEFAULT_TRAINING_OPTIONS>): Promise<unknown> => {
    const b = new OnnxTrainingBackend();
    try {
      await b.init({ ...DEFAULT_TRAINING_OPTIONS, device: 'cpu', ...o });
      return undefined;
    } catch (err) {
      return err;
    } finally {
      await b.close();
    }
  };
  t.ok(isNdpError(await tryInit({ model: 'huge' }), 'NDP_ERR_BAD_TRAIN_OPTION'), 'unknown preset');
  t.ok(isNdpError(await tryInit({ model: checkpoint, targetModules: ['qkv'] }), 'NDP_ERR_BAD_TRAIN_OPTION'), 'unknown target');
  t.ok(isNdpError(await tryInit({ model: checkpoint, tokenizerVocabSize: 151_669 }), 'NDP_ERR_VOCAB_MISMATCH'), 'tokenizer larger than the model');
  t.ok(isNdpError(await tryInit({ model: join(dir, 'nowhere/') }), 'NDP_ERR_BAD_CHECKPOINT'), 'missing checkpoint folder');
  t.equal(await tryInit({ model: checkpoint, tokenizerVocabSize: MICRO_CONFIG.vocabSize }), undefined, 'matching vocabulary accepted');
  const webgpu = await tryInit({ model: checkpoint, device: 'webgpu' });
  if (webgpu === undefined) t.pass('webgpu is available here');
  else t.ok(isNdpError(webgpu, 'NDP_ERR_DEVICE_UNAVAILABLE'), `webgpu refused: ${(webgpu as Error).message}`);
  t.ok(isNdpError(await tryInit({ model: checkpoint, device: 'tpu' }), 'NDP_ERR_BAD_TRAIN_OPTION'), 'unknown device');

  const b = new OnnxTrainingBackend();
  await b.init({ ...DEFAULT_TRAINING_OPTIONS, model: checkpoint, device: 'cpu' });
  t.teardown(() => b.close());
  const batch = makeBatch(2, 8, MICRO_CONFIG.vocabSize);
  batch.inputIds[3] = MICRO_CONFIG.vocabSize;
  await t.rejects(b.step(batch), { code: 'NDP_ERR_TOKEN_OUT_OF_RANGE' });
  const ok = await b.step(makeBatch(2, 8, MICRO_CONFIG.vocabSize));
  t.ok(Number.isFinite(ok.loss), 'the backend keeps working after a refused batch');
});

t.test('the tiny preset trains with the full Qwen3 vocabulary', async (t) => {
  const backend = new OnnxTrainingBackend();
  const info = await backend.init({ ...DEFAULT_TRAINING_OPTIONS, model: 'tiny', device: 'auto', learningRate: 1e-2 });
  t.teardown(() => backend.close());
  t.equal(info.vocabSize, 151_936);
  t.ok(info.notes.some((n) => n.startsWith('auto picked')), `auto says what it picked: ${info.notes.join('; ')}`);
  const batch = makeBatch(2, 32, 151_936);
  const first = await backend.step(batch);
  t.ok(Math.abs(first.loss - Math.log(151_936)) < 0.5, `initial loss ${first.loss.toFixed(3)} ≈ ln(vocab) ${Math.log(151_936).toFixed(3)}`);
  let last = first;
  for (let i = 0; i < 4; i++) last = await backend.step(batch);
  t.ok(last.loss < first.loss, `loss ${first.loss.toFixed(4)} → ${last.loss.toFixed(4)}`);
});
