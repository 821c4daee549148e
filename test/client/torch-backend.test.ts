/**
 * TorchTrainingBackend end to end: a real Python worker with torch (CPU here, CUDA on a GPU box),
 * checked against the ONNX session on the same model and the same batches. Skipped with the reason
 * where no Python can import torch.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTorchPython, TorchTrainingBackend } from '../../client/torch-backend.js';
import { DEFAULT_TRAINING_OPTIONS, OnnxTrainingBackend } from '../../client/trainer/onnx-training-backend.js';
import { readSafetensors } from '../../client/trainer/safetensors.js';
import { loraParams } from '../../client/trainer/lora-graphs.js';
import { MODEL_PRESETS } from '../../client/trainer/model-config.js';
import type { TrainingBackendOptions } from '../../client/trainer/training-backend.js';
import { isNdpError } from '../../src/protocol/errors.js';
import { MICRO_CONFIG, makeBatch } from '../trainer/fixtures.js';
import { writeCheckpoint } from '../trainer/checkpoint-fixture.js';

const found = await findTorchPython();
const skip = found === undefined ? 'no Python here imports torch (Debian: apt-get install python3-torch; or set NDP_PYTHON)' : false;

const dir = mkdtempSync(join(tmpdir(), 'ndp-torch-backend-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

async function firstLosses(options: TrainingBackendOptions, batch: ReturnType<typeof makeBatch>) {
  const out: Record<string, { eval: number; step: number; tokens: number }> = {};
  for (const [name, backend] of [['onnx', new OnnxTrainingBackend()], ['torch', new TorchTrainingBackend({ python: found!.python })]] as const) {
    try {
      await backend.init(options);
      const evaluated = await backend.evaluate(batch);
      const stepped = await backend.step(batch);
      out[name] = { eval: evaluated.loss, step: stepped.loss, tokens: stepped.lossTokens };
    } finally {
      await backend.close();
    }
  }
  return out as Record<'onnx' | 'torch', { eval: number; step: number; tokens: number }>;
}

t.test('same checkpoint, same batch: the torch worker and the ONNX session compute the same loss', { skip }, async (t) => {
  for (const qkNorm of [false, true]) {
    const config = { ...MICRO_CONFIG, qkNorm, qkvBias: !qkNorm };
    const checkpoint = join(dir, qkNorm ? 'micro-qwen3' : 'micro-qwen2');
    writeCheckpoint(checkpoint, config);
    const batch = makeBatch(3, 16, config.vocabSize);
    const r = await firstLosses({ ...DEFAULT_TRAINING_OPTIONS, model: checkpoint, device: 'cpu', loraRank: 4, loraAlpha: 8 }, batch);
    t.equal(r.torch.tokens, r.onnx.tokens, `${qkNorm ? 'qwen3' : 'qwen2'}: same loss positions`);
    // LoRA B starts at zero, so before the first update both see exactly the base model.
    t.ok(Math.abs(r.torch.eval - r.onnx.eval) < 1e-4, `${qkNorm ? 'qwen3' : 'qwen2'} eval loss: torch ${r.torch.eval} vs onnx ${r.onnx.eval}`);
    t.ok(Math.abs(r.torch.step - r.onnx.step) < 1e-4, `first step loss: torch ${r.torch.step} vs onnx ${r.onnx.step}`);
  }
});

t.test('the tiny preset: base weights sent with init make the same model as the ONNX session', { skip }, async (t) => {
  const batch = makeBatch(2, 24, MODEL_PRESETS.tiny!.vocabSize, 3);
  const r = await firstLosses({ ...DEFAULT_TRAINING_OPTIONS, model: 'tiny', device: 'cpu', seed: 7 }, batch);
  t.ok(Math.abs(r.torch.eval - r.onnx.eval) < 1e-4, `tiny eval loss: torch ${r.torch.eval} vs onnx ${r.onnx.eval}`);
});

t.test('train, evaluate, save: loss falls, accumulation steps, adapter in PEFT layout with the ONNX session keys', { skip }, async (t) => {
  const checkpoint = join(dir, 'micro-train');
  writeCheckpoint(checkpoint, MICRO_CONFIG);
  const targets = ['q_proj', 'v_proj', 'down_proj'];
  const options = { ...DEFAULT_TRAINING_OPTIONS, model: checkpoint, device: 'auto', targetModules: targets, loraRank: 4, loraAlpha: 8, learningRate: 2e-2, gradAccum: 2 };
  const backend = new TorchTrainingBackend({ python: found!.python });
  t.teardown(() => backend.close());
  const info = await backend.init(options);
  t.ok(info.device === 'cpu' || info.device.startsWith('cuda'), info.device);
  t.equal(info.vocabSize, MICRO_CONFIG.vocabSize);
  const params = loraParams(MICRO_CONFIG, { rank: 4, alpha: 8, targets });
  t.equal(info.trainableParameters, params.reduce((n, p) => n + p.shape[0] * p.shape[1], 0));
  const batch = makeBatch(4, 16, MICRO_CONFIG.vocabSize);
  const before = (await backend.evaluate(batch)).loss;
  const results = [];
  for (let i = 0; i < 24; i++) results.push(await backend.step(batch));
  t.same(results.slice(0, 4).map((r) => r.updated), [false, true, false, true]);
  t.equal(results.at(-1)!.optimizerStep, 12);
  t.ok(results[1]!.gradNorm! > 0);
  t.equal(results[0]!.gradNorm, undefined);
  const after = (await backend.evaluate(batch)).loss;
  t.ok(after < before - 0.05, `loss ${before} → ${after}`);
  const out = join(dir, 'adapter');
  await backend.saveAdapter(out);
  const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  t.match(config, { peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, target_modules: targets, bias: 'none' });
  const tensors = readSafetensors(readFileSync(join(out, 'adapter_model.safetensors')));
  t.same([...tensors.keys()].sort(), params.map((p) => p.peftKey).sort(), 'the keys the ONNX session writes');
  for (const p of params) t.same(tensors.get(p.peftKey)!.shape, p.shape, p.peftKey);
});

t.test('bad input and failures have codes: token out of range, vocabulary, device, killed worker', { skip }, async (t) => {
  const checkpoint = join(dir, 'micro-errors');
  writeCheckpoint(checkpoint, MICRO_CONFIG);
  const options = { ...DEFAULT_TRAINING_OPTIONS, model: checkpoint, device: 'cpu' };
  const backend = new TorchTrainingBackend({ python: found!.python });
  t.teardown(() => backend.close());
  await backend.init(options);
  const bad = makeBatch(2, 8, MICRO_CONFIG.vocabSize);
  (bad.inputIds as Int32Array)[3] = MICRO_CONFIG.vocabSize;
  const err = await backend.step(bad).catch((e: unknown) => e);
  t.ok(isNdpError(err, 'NDP_ERR_TOKEN_OUT_OF_RANGE'), String(err));
  t.equal((await backend.step(makeBatch(2, 8, MICRO_CONFIG.vocabSize))).lossTokens > 0, true, 'the channel survives a bad batch');

  const pid = (backend as unknown as { channel: { pid: number } }).channel.pid;
  process.kill(pid, 'SIGKILL');
  const crashed = await backend.step(makeBatch(2, 8, MICRO_CONFIG.vocabSize)).catch((e: unknown) => e);
  t.ok(isNdpError(crashed, 'NDP_ERR_WORKER_EXITED'), String(crashed));
  t.match((crashed as Error).message, /SIGKILL/);

  const vocab = await new TorchTrainingBackend({ python: found!.python }).init({ ...options, tokenizerVocabSize: MICRO_CONFIG.vocabSize + 1 }).catch((e: unknown) => e);
  t.ok(isNdpError(vocab, 'NDP_ERR_VOCAB_MISMATCH'), String(vocab));
  const device = await new TorchTrainingBackend({ python: found!.python }).init({ ...options, device: 'webgpu' }).catch((e: unknown) => e);
  t.ok(isNdpError(device, 'NDP_ERR_BAD_TRAIN_OPTION'), String(device));
});

t.test('no Python with torch: NDP_ERR_WORKER_START with what to do', async (t) => {
  const backend = new TorchTrainingBackend({ python: '/nonexistent/python3' });
  const err = await backend.init({ ...DEFAULT_TRAINING_OPTIONS, device: 'cpu' }).catch((e: unknown) => e);
  t.ok(isNdpError(err, 'NDP_ERR_WORKER_START'), String(err));
  t.equal(await findTorchPython(['/nonexistent/python3']), undefined);
});
