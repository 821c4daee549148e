/**
 * Child process of webgpu.test.ts: one training step of a micro model on cpu and on webgpu from the
 * same state; prints { cpu, webgpu } losses and the largest difference of the updated LoRA matrices
 * as JSON. ONNX Runtime's placement log (logSeverityLevel 0) goes to stderr.
 */
import { LoraSession } from '../../client/trainer/lora-session.js';
import { randomBaseWeights } from '../../client/trainer/base-weights.js';
import { MICRO_CONFIG, makeBatch } from './fixtures.js';

const weights = randomBaseWeights(MICRO_CONFIG, 1);
const lora = { rank: 2, alpha: 4, targets: ['q_proj', 'v_proj'] };
const batch = makeBatch(2, 8, MICRO_CONFIG.vocabSize);
const results: Record<string, { loss: number; params: Float32Array[] }> = {};
for (const device of ['cpu', 'webgpu'] as const) {
  const s = new LoraSession({ config: MICRO_CONFIG, weights, lora, device, seed: 2, learningRate: 0.05, verbosePlacement: device === 'webgpu' });
  for (const p of s.params) if (p.kind === 'B') s.setParam(p.name, Array.from({ length: p.shape[0] * p.shape[1] }, (_, i) => Math.sin(i) * 0.2));
  const r = await s.microStep(batch);
  results[device] = { loss: r.loss, params: s.params.map((p) => Float32Array.from(s.getParam(p.name))) };
  await s.close();
}
let maxParamDiff = 0;
results.cpu?.params.forEach((p, k) => p.forEach((x, i) => (maxParamDiff = Math.max(maxParamDiff, Math.abs(x - (results.webgpu?.params[k]?.[i] as number))))));
process.stdout.write(JSON.stringify({ cpu: results.cpu?.loss, webgpu: results.webgpu?.loss, maxParamDiff }) + '\n');
