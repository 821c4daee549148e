import t, { type Test } from 'tap';
import ort from 'onnxruntime-node';
import { buildEvalGraph, buildGradientGraph, gradName, loraParams, LOSS_SUM, STEP_INPUTS, type LoraSpec } from '../../client/trainer/lora-graphs.js';
import { randomBaseWeights, seededRandom } from '../../client/trainer/base-weights.js';
import { encodeModel } from '../../client/trainer/onnx-encoder.js';
import { lossTargets } from '../../client/trainer/loss-targets.js';
import type { ModelConfig } from '../../client/trainer/model-config.js';
import type { Graph } from '../../client/trainer/graph.js';
import { MICRO_CONFIG, makeBatch } from './fixtures.js';

const ALL_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

async function session(graph: Graph): Promise<ort.InferenceSession> {
  const e = encodeModel(graph);
  // ONNX Runtime's extended fusions (QuickGelu, …) have float kernels only: float64 graphs stay at 'basic'.
  return ort.InferenceSession.create(e.model, { graphOptimizationLevel: 'basic', ...(e.externalData ? { externalData: [e.externalData] } : {}) });
}

/** Directional finite differences of the whole model's summed loss against the autodiff LoRA gradient, float64 on cpu. */
async function wholeModelCheck(tt: Test, config: ModelConfig, spec: LoraSpec): Promise<number> {
  const B = 3;
  const T = 8;
  const weights = randomBaseWeights(config, 3);
  // Larger base weights than the 0.02 init make every nonlinearity matter in the check.
  for (const [name, w] of weights) if (!name.endsWith('norm.weight')) w.data.forEach((x, i) => (w.data[i] = x * 20));
  const grad = await session(buildGradientGraph(config, weights, spec, B, T, 'float64'));
  const evaluate = await session(buildEvalGraph(config, weights, spec, B, T, 'float64'));
  const batch = makeBatch(B, T, config.vocabSize);
  const lt = lossTargets(batch, config.vocabSize);
  const base: Record<string, ort.Tensor> = {
    [STEP_INPUTS.inputIds]: new ort.Tensor('int32', lt.inputIds, [B, T]),
    [STEP_INPUTS.positionIds]: new ort.Tensor('int32', batch.positionIds, [B, T]),
    [STEP_INPUTS.documentIds]: new ort.Tensor('int32', lt.documentIds, [B, T]),
    [STEP_INPUTS.lossPositions]: new ort.Tensor('int32', lt.positions, [lt.positions.length]),
    [STEP_INPUTS.lossTargets]: new ort.Tensor('int32', lt.targets, [lt.targets.length, 1]),
  };
  const params = loraParams(config, spec);
  const rand = seededRandom(7);
  // B ≠ 0 (unlike the PEFT init) so the gradients of A are not trivially zero.
  const x0 = params.map((p) => Float64Array.from({ length: p.shape[0] * p.shape[1] }, () => (rand() * 2 - 1) * 0.5));
  const feeds = (xs: Float64Array[]): Record<string, ort.Tensor> => {
    const f = { ...base };
    params.forEach((p, i) => (f[p.name] = new ort.Tensor('float64', xs[i] as Float64Array, [...p.shape])));
    return f;
  };
  const out = await grad.run(feeds(x0));
  const fEval = Number((await evaluate.run(feeds(x0)))[LOSS_SUM]?.data[0]);
  tt.equal(Number(out[LOSS_SUM]?.data[0]), fEval, 'gradient and eval graphs agree on the loss');
  let worst = 0;
  const eps = 1e-6;
  for (let k = 0; k < 3; k++) {
    const d = x0.map((x) => Float64Array.from(x, () => rand() * 2 - 1));
    const shift = (s: number): Float64Array[] => x0.map((x, i) => x.map((v, j) => v + s * eps * ((d[i] as Float64Array)[j] as number)));
    const fp = Number((await evaluate.run(feeds(shift(1))))[LOSS_SUM]?.data[0]);
    const fm = Number((await evaluate.run(feeds(shift(-1))))[LOSS_SUM]?.data[0]);
    let analytic = 0;
    params.forEach((p, i) => (out[gradName(p)]?.data as Float64Array).forEach((gv, j) => (analytic += gv * ((d[i] as Float64Array)[j] as number))));
    const fd = (fp - fm) / (2 * eps);
    worst = Math.max(worst, Math.abs(fd - analytic) / Math.max(1, Math.abs(analytic)));
  }
  await grad.release();
  await evaluate.release();
  return worst;
}

t.test('whole-model LoRA gradient (all seven projections, tied head, qkv bias) matches finite differences', async (t) => {
  const err = await wholeModelCheck(t, MICRO_CONFIG, { rank: 3, alpha: 6, targets: ALL_TARGETS });
  t.ok(err < 1e-6, `max relative error ${err.toExponential(2)}`);
});

t.test('whole-model gradient with an untied head and Qwen3 q/k norms', async (t) => {
  const err = await wholeModelCheck(t, { ...MICRO_CONFIG, tieWordEmbeddings: false, qkvBias: false, qkNorm: true }, { rank: 2, alpha: 4, targets: ['q_proj', 'v_proj', 'down_proj'] });
  t.ok(err < 1e-6, `max relative error ${err.toExponential(2)}`);
});

t.test('whole-model gradient with multi-head attention (no grouping)', async (t) => {
  const err = await wholeModelCheck(t, { ...MICRO_CONFIG, numKvHeads: 4 }, { rank: 2, alpha: 2, targets: ['k_proj', 'o_proj'] });
  t.ok(err < 1e-6, `max relative error ${err.toExponential(2)}`);
});
