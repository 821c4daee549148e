/**
 * GPU check of the LoRA training session: the same steps on the same batches, from the same initial
 * weights, on each ONNX Runtime device (webgpu where a GPU is reachable, and cpu), and — for
 * reference — with PyTorch (bench/torch_lora_reference.py, CUDA when available). Prints tokens/s,
 * first/last loss and our tokens/s ÷ PyTorch's; writes bench/results/gpu-lora.json.
 *
 *   node dist/bench/gpu-lora.js [--preset small] [--steps 10] [--batch 8] [--seq 256]
 *        [--devices webgpu,cpu] [--grad-accum 1] [--lr 1e-3] [--torch auto|off|cpu]
 *
 * On a GPU machine: `../shared/gpu/pack.sh dist`, then `bash .gpu/run.sh node dist/bench/gpu-lora.js`.
 * Without a GPU, webgpu is reported as unavailable and the rest still runs (cpu-only mode).
 */
import { parseArgs } from 'node:util';
import type { Batch } from '../client/batch.js';
import { LoraSession } from '../client/trainer/lora-session.js';
import { MODEL_PRESETS, type ModelConfig } from '../client/trainer/model-config.js';
import { randomBaseWeights, seededRandom } from '../client/trainer/base-weights.js';
import { probeDevice, type ConcreteDevice } from '../client/trainer/devices.js';
import { report, type Row } from './report.js';
import { runTorchReference, type TorchReferenceResult } from './torch-reference.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'small' },
    steps: { type: 'string', default: '10' },
    batch: { type: 'string', default: '8' },
    seq: { type: 'string', default: '256' },
    devices: { type: 'string', default: 'webgpu,cpu' },
    'grad-accum': { type: 'string', default: '1' },
    lr: { type: 'string', default: '1e-3' },
    torch: { type: 'string', default: 'auto' },
  },
});
const config = MODEL_PRESETS[values.preset] as ModelConfig | undefined;
if (config === undefined) throw new Error(`unknown preset ${values.preset}`);
const steps = Number(values.steps);
const batchSize = Number(values.batch);
const seqLen = Number(values.seq);
const gradAccum = Number(values['grad-accum']);
const learningRate = Number(values.lr);
const lora = { rank: 8, alpha: 16, targets: ['q_proj', 'v_proj'] };
const seed = 0;

/** Rows of a synthetic language (a successor table over 256 ids spread over the vocabulary), packed two documents per row, a few padded tokens. */
function makeBatches(count: number): Batch[] {
  const rand = seededRandom(11);
  const alphabet = Array.from({ length: 256 }, () => Math.floor(rand() * config!.vocabSize));
  const next = alphabet.map(() => Math.floor(rand() * alphabet.length));
  return Array.from({ length: count }, () => {
    const n = batchSize * seqLen;
    const b = { inputIds: new Int32Array(n), attentionMask: new Int32Array(n), labels: new Int32Array(n), positionIds: new Int32Array(n), documentIds: new Int32Array(n) };
    let tokens = 0;
    for (let r = 0; r < batchSize; r++) {
      const used = seqLen - Math.floor(rand() * (seqLen / 8));
      const split = Math.floor(used * (0.3 + 0.4 * rand()));
      let state = Math.floor(rand() * alphabet.length);
      for (let t = 0; t < seqLen; t++) {
        const i = r * seqLen + t;
        if (t >= used) {
          b.labels[i] = -100;
          continue;
        }
        if (t === split) state = Math.floor(rand() * alphabet.length);
        b.inputIds[i] = alphabet[state] as number;
        state = next[state] as number;
        b.attentionMask[i] = 1;
        b.documentIds[i] = t < split ? 1 : 2;
        b.positionIds[i] = t < split ? t : t - split;
        b.labels[i] = b.positionIds[i] === 0 ? -100 : (b.inputIds[i] as number);
        tokens++;
      }
    }
    return { batchSize, seqLen, ...b, sampleIndices: [], tokenCount: tokens };
  });
}

interface RunResult {
  readonly firstLoss: number;
  readonly lastLoss: number;
  readonly tokensPerSecond: number;
  readonly medianStepMs: number;
  readonly firstStepMs: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function runOnnx(device: ConcreteDevice, weights: ReturnType<typeof randomBaseWeights>, batches: Batch[]): Promise<RunResult> {
  const session = new LoraSession({ config: config!, weights, lora, device, learningRate, gradAccum, seed });
  const losses: number[] = [];
  const stepMs: number[] = [];
  let timedTokens = 0;
  let timedMs = 0;
  try {
    for (let s = 0; s < steps; s++) {
      const started = performance.now();
      let sum = 0;
      let count = 0;
      let tokens = 0;
      for (const b of batches.slice(s * gradAccum, (s + 1) * gradAccum)) {
        const r = await session.microStep(b);
        sum += r.loss * r.lossTokens;
        count += r.lossTokens;
        tokens += b.tokenCount;
      }
      const ms = performance.now() - started;
      losses.push(sum / count);
      stepMs.push(ms);
      // The first step builds the sessions and uploads the base weights: timed separately.
      if (s > 0) {
        timedTokens += tokens;
        timedMs += ms;
      }
      process.stderr.write(`  ${device} step ${s + 1}/${steps} loss ${(sum / count).toFixed(4)} ${ms.toFixed(0)} ms\n`);
    }
  } finally {
    await session.close();
  }
  return { firstLoss: losses[0] ?? NaN, lastLoss: losses.at(-1) ?? NaN, tokensPerSecond: timedTokens / (timedMs / 1000), medianStepMs: median(stepMs.slice(1)), firstStepMs: stepMs[0] ?? NaN };
}

const weights = randomBaseWeights(config, seed);
const batches = makeBatches(steps * gradAccum);
const rows: Row[] = [];
const results: Record<string, unknown> = {};
let torchResult: TorchReferenceResult;
process.stderr.write(`model ${values.preset}: ${config.numLayers} layers, hidden ${config.hiddenSize}, vocab ${config.vocabSize}; batch ${batchSize}×${seqLen}, ${steps} steps\n`);
torchResult = runTorchReference({ config, weights, lora, batches, batchSize, seqLen, steps, gradAccum, learningRate, seed, mode: values.torch });
const torchTps = 'skipped' in torchResult ? NaN : torchResult.tokensPerSecond;
for (const device of values.devices.split(',') as ConcreteDevice[]) {
  const unavailable = await probeDevice(device);
  if (unavailable !== undefined) {
    rows.push({ engine: 'onnxruntime-node', device, steps: 0, 'first loss': '—', 'last loss': '—', 'tokens/s': '—', 'median step ms': '—', 'first step ms': '—', '÷ PyTorch': '—', note: unavailable.slice(0, 80) });
    results[device] = { unavailable };
    continue;
  }
  const r = await runOnnx(device, weights, batches);
  results[device] = r;
  rows.push({ engine: 'onnxruntime-node', device, steps, 'first loss': r.firstLoss.toFixed(4), 'last loss': r.lastLoss.toFixed(4), 'tokens/s': r.tokensPerSecond, 'median step ms': r.medianStepMs, 'first step ms': r.firstStepMs, '÷ PyTorch': Number.isNaN(torchTps) ? '—' : (r.tokensPerSecond / torchTps).toFixed(3), note: '' });
}
if ('skipped' in torchResult) rows.push({ engine: 'pytorch', device: '—', steps: 0, 'first loss': '—', 'last loss': '—', 'tokens/s': '—', 'median step ms': '—', 'first step ms': '—', '÷ PyTorch': '—', note: torchResult.skipped.slice(0, 80) });
else rows.push({ engine: 'pytorch', device: torchResult.device, steps, 'first loss': torchResult.firstLoss.toFixed(4), 'last loss': torchResult.lastLoss.toFixed(4), 'tokens/s': torchResult.tokensPerSecond, 'median step ms': torchResult.medianStepMs, 'first step ms': torchResult.firstStepMs, '÷ PyTorch': '1.000', note: 'reference' });
report('gpu-lora', rows, { preset: values.preset, batchSize, seqLen, steps, gradAccum, learningRate, lora, results, torch: torchResult }, `LoRA training: ${values.preset}, batch ${batchSize}×${seqLen}, ${steps} steps (tokens/s excludes the first step)`);
