/**
 * Same model, same batches, one process run: the ONNX LoRA session (webgpu on a GPU machine) vs the
 * PyTorch worker behind the worker channel (cuda), both fed by the real data path: a DataServer on
 * loopback streams the same seeded synthetic dataset over UDP, the client reassembles and batches,
 * and `trainLoop` drives each backend exactly as `ndp train` does. Prints tokens/s, data-stall %
 * (time the loop waited for the next batch ÷ wall time), compute ms per step and the ratio to the
 * ONNX row; writes bench/results/torch-vs-webgpu.json.
 *
 *   node dist/bench/torch-vs-webgpu.js [--model small] [--steps 30] [--warmup 3] [--batch 8] [--seq 256]
 *        [--onnx-device webgpu] [--torch-device cuda] [--precision fp32|bf16] [--cpu]
 *
 * `--cpu` runs both on the CPU with a tiny workload (proves the bench on a machine without a GPU).
 * On a GPU machine: `../shared/gpu/pack.sh dist`, then `bash .gpu/run.sh node dist/bench/torch-vs-webgpu.js`.
 */
import { parseArgs } from 'node:util';
import type { Batch } from '../client/batch.js';
import { connect } from '../client/client.js';
import { TorchTrainingBackend, findTorchPython } from '../client/torch-backend.js';
import { seededRandom } from '../client/trainer/base-weights.js';
import { probeDevice } from '../client/trainer/devices.js';
import { MODEL_PRESETS } from '../client/trainer/model-config.js';
import { DEFAULT_TRAINING_OPTIONS, OnnxTrainingBackend } from '../client/trainer/onnx-training-backend.js';
import { trainLoop, type StepMetrics } from '../client/trainer/train-loop.js';
import type { TrainingBackend, TrainingBackendOptions } from '../client/trainer/training-backend.js';
import { DataServer } from '../server/data-server.js';
import type { Sample, SampleSource } from '../src/dataset/sample.js';
import { encodeSampleBody } from '../src/protocol/sample-body.js';
import { SRC } from '../src/protocol/registry.js';
import { report, type Row } from './report.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    steps: { type: 'string' },
    warmup: { type: 'string' },
    batch: { type: 'string' },
    seq: { type: 'string' },
    'onnx-device': { type: 'string' },
    'torch-device': { type: 'string' },
    precision: { type: 'string', default: 'fp32' },
    cpu: { type: 'boolean', default: false },
  },
});
const cpu = values.cpu === true;
const model = values.model ?? (cpu ? 'tiny' : 'small');
const steps = Number(values.steps ?? (cpu ? 4 : 30));
const warmup = Number(values.warmup ?? (cpu ? 1 : 3));
const batchSize = Number(values.batch ?? (cpu ? 2 : 8));
const seqLen = Number(values.seq ?? (cpu ? 64 : 256));
const onnxDevice = values['onnx-device'] ?? (cpu ? 'cpu' : 'webgpu');
const torchDevice = values['torch-device'] ?? (cpu ? 'cpu' : 'cuda');
const precision = values.precision === 'bf16' ? 'bf16' : 'fp32';
const config = MODEL_PRESETS[model];
if (config === undefined) throw new Error(`--model ${model}: one of ${Object.keys(MODEL_PRESETS).join(', ')}`);
if (!(steps > warmup && warmup >= 0)) throw new Error('--steps must exceed --warmup');

/**
 * A seeded synthetic dataset in memory: a successor table over 256 ids spread over the vocabulary
 * (learnable, so the loss falls), lengths between half and the whole row.
 */
function syntheticSource(sampleCount: number): SampleSource {
  const rand = seededRandom(11);
  const alphabet = Array.from({ length: 256 }, () => Math.floor(rand() * config!.vocabSize));
  const next = alphabet.map(() => Math.floor(rand() * alphabet.length));
  const samples: Sample[] = Array.from({ length: sampleCount }, (_, index) => {
    const length = Math.floor(seqLen / 2 + rand() * (seqLen / 2));
    const tokens = new Int32Array(length);
    let state = Math.floor(rand() * alphabet.length);
    for (let i = 0; i < length; i++) {
      tokens[i] = alphabet[state]!;
      state = next[state]!;
    }
    return { index, src: SRC.SYNTHETIC, tokens, lossMask: new Uint8Array(length).fill(1) };
  });
  const bodies = samples.map((s) => encodeSampleBody(s));
  return {
    name: 'synthetic',
    src: SRC.SYNTHETIC,
    sampleCount,
    tokenCount: samples.reduce((n, s) => n + s.tokens.length, 0),
    tokenizer: { name: 'synthetic', hash: '0'.repeat(64), vocabSize: config!.vocabSize },
    read: async (i) => samples[i]!,
    readBody: async (i) => bodies[i]!,
    close: async () => {},
  };
}

interface RunResult {
  readonly row: Row;
  readonly tokensPerSecond: number;
}

/** One backend over a fresh server session with the same seed: the very same batches in the same order. */
async function run(name: string, backend: TrainingBackend, device: string): Promise<RunResult> {
  const channel = backend instanceof TorchTrainingBackend ? backend : undefined;
  const options: TrainingBackendOptions = { ...DEFAULT_TRAINING_OPTIONS, model, device, seed: 0, learningRate: 1e-3 };
  const info = await backend.init(options);
  const server = new DataServer([syntheticSource(batchSize * (steps + 2))], { host: '127.0.0.1', udpPort: 0, wsPort: null, httpPort: null });
  const ports = await server.start();
  const client = await connect(`udp://127.0.0.1:${ports.udp}`, { params: { seed: 1, epochs: 1000 } });
  const perStep: StepMetrics[] = [];
  try {
    const summary = await trainLoop(backend, client.batches({ batchSize, seqLen, packing: false, equalSteps: false }) as AsyncIterable<Batch>, {
      steps,
      onStep: (m) => perStep.push(m),
    });
    const measured = perStep.slice(warmup);
    const stats = channel?.channelStats;
    const sum = (f: (m: StepMetrics) => number): number => measured.reduce((a, m) => a + f(m), 0);
    const wallMs = sum((m) => m.stepMs);
    return {
      tokensPerSecond: sum((m) => m.tokens) / (wallMs / 1000),
      row: {
        backend: name,
        device: info.device,
        'tokens/s': sum((m) => m.tokens) / (wallMs / 1000),
        'data stall %': (100 * sum((m) => m.dataStallMs)) / wallMs,
        'compute ms/step': sum((m) => m.computeMs) / measured.length,
        'step ms': wallMs / measured.length,
        // The worker's share of compute spent reading the batch off the socket and checking CRCs (all steps).
        'channel ms/step': stats !== undefined && stats.batches > 0 ? stats.receiveMs / stats.batches : '—',
        // Four decimals: the same first loss on both rows shows they trained the same model on the same batch.
        'first loss': summary.firstLoss.toFixed(4),
        'last loss': summary.lastLoss.toFixed(4),
      },
    };
  } finally {
    await client.close();
    await server.close();
    await backend.close();
  }
}

const rows: Row[] = [];
const notes: string[] = [];
let onnxRate: number | undefined;
const onnxReason = await probeDevice(onnxDevice === 'webgpu' ? 'webgpu' : onnxDevice === 'cuda' ? 'cuda' : 'cpu');
if (onnxReason === undefined) {
  const r = await run('onnx session', new OnnxTrainingBackend(), onnxDevice);
  onnxRate = r.tokensPerSecond;
  rows.push({ ...r.row, 'vs onnx': 1 });
} else {
  notes.push(`onnx ${onnxDevice}: ${onnxReason}`);
  rows.push({ backend: 'onnx session', device: `${onnxDevice} (unavailable)` });
}
const python = await findTorchPython();
if (python !== undefined) {
  try {
    const r = await run(`torch worker (${precision})`, new TorchTrainingBackend({ python: python.python, precision }), torchDevice);
    rows.push({ ...r.row, 'vs onnx': onnxRate !== undefined ? r.tokensPerSecond / onnxRate : 'n/a' });
    notes.push(`torch ${python.torch} (${python.python})`);
  } catch (err) {
    notes.push(`torch ${torchDevice}: ${(err as Error).message.split('\n')[0]}`);
    rows.push({ backend: 'torch worker', device: `${torchDevice} (failed)` });
  }
} else {
  notes.push('no Python with torch here');
  rows.push({ backend: 'torch worker', device: `${torchDevice} (no torch)` });
}
report('torch-vs-webgpu', rows, { model, batchSize, seqLen, steps, warmup, precision, transport: 'udp loopback', notes },
  `LoRA training, same model (${model}) and batches (${batchSize}×${seqLen}, UDP loopback, ${steps - warmup} measured steps after ${warmup} warm-up)`);
for (const note of notes) process.stdout.write(`note: ${note}\n`);
