/**
 * Finite-difference gradient check shared by the per-op and whole-model tests: compares the
 * autodiff gradient's directional derivative ⟨∇f, d⟩ with (f(x+εd) − f(x−εd)) / 2ε along random
 * directions, running both through ONNX Runtime's CPU EP in float64.
 */
import ort from 'onnxruntime-node';
import { Graph, type Value } from '../../client/trainer/graph.js';
import { gradients } from '../../client/trainer/autodiff.js';
import { seededRandom } from '../../client/trainer/base-weights.js';
import { encodeModel } from '../../client/trainer/onnx-encoder.js';

export interface GradCase {
  /** Builds the forward graph; returns the parameters (graph inputs) and the scalar loss. */
  build(g: Graph): { params: Value[]; loss: Value; feeds?: Record<string, ort.Tensor> };
  /** Initial parameter values (float64); random in [-1, 1] when absent. */
  init?: (p: Value, rand: () => number) => Float64Array;
}

export interface GradCheckResult {
  /** Largest |fd − analytic| / max(1, |analytic|) over the directions tried. */
  readonly maxRelError: number;
  readonly directions: number;
}

export async function checkGradient(c: GradCase, directions = 3, eps = 1e-5, seed = 1): Promise<GradCheckResult> {
  const rand = seededRandom(seed);
  const g = new Graph('float64');
  const { params, loss, feeds = {} } = c.build(g);
  const grads = gradients(g, loss, params);
  g.output(loss, 'loss_out');
  params.forEach((p, i) => g.output(grads.get(p.name) as Value, `grad_${i}`));
  const enc = encodeModel(g);
  const session = await ort.InferenceSession.create(enc.model, enc.externalData ? { externalData: [enc.externalData] } : {});
  try {
    const size = (p: Value): number => (p.shape as number[]).reduce((a, b) => a * b, 1);
    const x0 = params.map((p) => c.init?.(p, rand) ?? Float64Array.from({ length: size(p) }, () => rand() * 2 - 1));
    const run = async (xs: Float64Array[]): Promise<ort.InferenceSession.OnnxValueMapType> => {
      const f: Record<string, ort.Tensor> = { ...feeds };
      params.forEach((p, i) => (f[p.name] = new ort.Tensor('float64', xs[i] as Float64Array, p.shape as number[])));
      return session.run(f);
    };
    const base = await run(x0);
    const analytic = params.map((_, i) => base[`grad_${i}`]?.data as Float64Array);
    let maxRelError = 0;
    for (let k = 0; k < directions; k++) {
      const d = x0.map((x) => Float64Array.from(x, () => rand() * 2 - 1));
      const plus = x0.map((x, i) => x.map((v, j) => v + eps * ((d[i] as Float64Array)[j] as number)));
      const minus = x0.map((x, i) => x.map((v, j) => v - eps * ((d[i] as Float64Array)[j] as number)));
      const fp = Number((await run(plus)).loss_out?.data[0]);
      const fm = Number((await run(minus)).loss_out?.data[0]);
      const fd = (fp - fm) / (2 * eps);
      let an = 0;
      analytic.forEach((gv, i) => gv.forEach((v, j) => (an += v * ((d[i] as Float64Array)[j] as number))));
      maxRelError = Math.max(maxRelError, Math.abs(fd - an) / Math.max(1, Math.abs(an)));
    }
    return { maxRelError, directions };
  } finally {
    await session.release();
  }
}
