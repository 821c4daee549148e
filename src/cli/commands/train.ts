/**
 * `ndp train`: pulls batches from an ndp server (or a local .ndp file), trains LoRA adapters on the
 * generated ONNX step graphs, and writes the adapter (PEFT layout) and per-step metrics to --out.
 */
import { parseArgs } from 'node:util';
import { join, resolve } from 'node:path';
import { writeFileSync } from 'node:fs';
import type { Batch } from '../../../client/batch.js';
import { connect, type NdpClient } from '../../../client/client.js';
import { NdpError } from '../../protocol/errors.js';
import { openPcapTap, PCAP_OPTIONS, PCAP_USAGE } from '../../capture/pcap-cli-options.js';
import type { CaptureTap } from '../../capture/tap.js';
import type { LossPolicy } from '../../protocol/control.js';
import type { TrainingBackend, TrainingBackendOptions } from '../../../client/trainer/training-backend.js';
import { DEFAULT_TRAINING_OPTIONS, OnnxTrainingBackend } from '../../../client/trainer/onnx-training-backend.js';
import { TorchTrainingBackend } from '../../../client/torch-backend.js';
import { trainLoop, type DropCounts, type StepMetrics, type TrainSummary } from '../../../client/trainer/train-loop.js';
import { collectBatches, fileBatches } from '../../../client/trainer/file-batches.js';
import { openNdpFile, type NdpFile } from '../../dataset/ndp-file.js';

const D = DEFAULT_TRAINING_OPTIONS;

export const usage = `usage: ndp train (--server URL | --data FILE.ndp) [options]

Train LoRA adapters of a Qwen2-style decoder on batches streamed from an ndp server (or read from a
local .ndp file). Writes adapter_config.json + adapter_model.safetensors (PEFT layout), metrics.jsonl
(one line per optimizer step) and summary.json into --out.

data:
  --server URL        ndp server (udp://host:port, ws://host:port/…, or http://host:port)
  --data FILE         local .ndp file instead of a server (cycled until --steps)
  --transport T       udp or ws when --server is an http:// URL (default udp)
  --epochs N          epochs to ask the server for (default 100; training stops at --steps)
  --crc-drop P        drop this share of frames as if their CRC failed (augmentation, default 0)
  --loss L            repair | lossy (default repair). With repair, frames lost or dropped by
                      --crc-drop are NACKed and resent, so training still sees every sample; with
                      lossy a sample that lost a frame is dropped whole and counted (the seed's
                      CRC-Drop augmentation reaches the model only with lossy)
  --dataset NAME      dataset to train on (repeatable; default: every dataset of the server)
  --token SECRET      bearer token for a server started with --token
  --packing           pack several samples per row (default: one sample per row, padded)
  --eval-server URL   held-out data from another server
  --eval-file FILE    held-out data from a local .ndp file
  --eval-batches K    held-out batches to evaluate (default 4)
  --eval-every N      evaluate every N steps (default 0: before the first and after the last step)
${PCAP_USAGE}
model and device:
  --model M           tiny | small | base (seeded random base) or a Hugging Face Qwen2/Qwen3
                      checkpoint folder (config.json + *.safetensors) (default ${D.model})
  --device D          auto | cpu | webgpu | cuda (default ${D.device}; auto says what it picked)
  --backend B         onnx | torch (default onnx); torch hands batches to a PyTorch worker
                      (python/ndp_torch; NDP_PYTHON picks the interpreter) on cpu or cuda
training:
  --steps N           optimizer steps (default 50)
  --batch B           rows per micro-batch (default 4)
  --seq T             tokens per row (default 128)
  --grad-accum K      micro-batches per optimizer step (default ${D.gradAccum})
  --lr X              AdamW learning rate (default ${D.learningRate})
  --weight-decay X    AdamW weight decay (default ${D.weightDecay})
  --max-grad-norm X   global gradient-norm clip (default ${D.maxGradNorm})
  --lora-r R          LoRA rank (default ${D.loraRank})
  --lora-alpha A      LoRA alpha (default ${D.loraAlpha})
  --target LIST       comma-separated projections (default ${D.targetModules.join(',')})
  --seed S            seed of the base init and LoRA init (default ${D.seed})
output:
  --out DIR           output folder (default ndp-train-out)
  --json              print the summary as JSON
  --verbose-placement print ONNX Runtime's node placement (which device runs each node)`;

/** Backends `--backend` can name. */
const BACKENDS: Record<string, (o: { verbosePlacement: boolean }) => TrainingBackend> = {
  onnx: (o) => new OnnxTrainingBackend(o),
  torch: () => new TorchTrainingBackend(),
};

function num(name: string, raw: string | undefined, fallback: number, check: (x: number) => boolean, what: string): number {
  if (raw === undefined) return fallback;
  const x = Number(raw);
  if (!Number.isFinite(x) || !check(x)) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `--${name} ${raw}: must be ${what}`);
  return x;
}
const posInt = (x: number): boolean => Number.isInteger(x) && x >= 1;

interface DataSource {
  readonly batches: AsyncIterable<Batch>;
  readonly vocabSize: number | undefined;
  readonly drops: () => DropCounts;
  close(): Promise<void>;
}

interface ServerSourceOptions {
  readonly batchSize: number;
  readonly seqLen: number;
  readonly packing: boolean;
  readonly crcDrop: number;
  readonly seed: number;
  readonly epochs: number;
  readonly transport: 'udp' | 'ws';
  readonly tap: CaptureTap | undefined;
  readonly loss: LossPolicy;
  readonly datasets: readonly string[] | undefined;
  readonly token: string | undefined;
}

async function serverSource(url: string, o: ServerSourceOptions): Promise<DataSource & { client: NdpClient }> {
  let client: NdpClient;
  try {
    client = await connect(url, {
      transport: o.transport,
      crcDropRate: o.crcDrop,
      crcDropSeed: o.seed,
      params: { epochs: o.epochs, loss: o.loss, ...(o.datasets !== undefined ? { sources: o.datasets.map((dataset) => ({ dataset })) } : {}) },
      ...(o.token !== undefined ? { token: o.token } : {}),
      ...(o.tap !== undefined ? { tap: o.tap } : {}),
    });
  } catch (err) {
    if (err instanceof NdpError) throw err;
    throw new NdpError('NDP_ERR_UNREACHABLE', `cannot reach the ndp server at ${url}: ${(err as Error).message}`, { cause: err });
  }
  const nonZero = (r: Readonly<Record<string, number>>): Record<string, number> => Object.fromEntries(Object.entries(r).filter(([, v]) => v > 0));
  const drops = (): DropCounts => {
    const s = client.accounting.snapshot();
    return { samples: nonZero(s.samples.dropped), frames: nonZero(s.frames.dropped) };
  };
  return {
    client,
    batches: client.batches({ batchSize: o.batchSize, seqLen: o.seqLen, packing: o.packing, equalSteps: false }),
    vocabSize: client.accept.tokenizer?.vocabSize,
    drops,
    close: () => client.close(),
  };
}

async function fileSource(path: string, o: { batchSize: number; seqLen: number; packing: boolean; epochs?: number }): Promise<DataSource & { file: NdpFile }> {
  const file = await openNdpFile(path);
  return {
    file,
    batches: fileBatches(file, { batchSize: o.batchSize, seqLen: o.seqLen, packing: o.packing, ...(o.epochs !== undefined ? { epochs: o.epochs } : {}) }),
    vocabSize: file.tokenizer.vocabSize,
    drops: () => ({ samples: { ...file.stats().dropped } }),
    close: () => file.close(),
  };
}

function fmtLoss(x: number | undefined): string {
  return x === undefined || Number.isNaN(x) ? '—' : x.toFixed(4);
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      server: { type: 'string' },
      data: { type: 'string' },
      transport: { type: 'string' },
      epochs: { type: 'string' },
      'crc-drop': { type: 'string' },
      loss: { type: 'string' },
      dataset: { type: 'string', multiple: true },
      token: { type: 'string' },
      packing: { type: 'boolean' },
      'eval-server': { type: 'string' },
      'eval-file': { type: 'string' },
      'eval-batches': { type: 'string' },
      'eval-every': { type: 'string' },
      model: { type: 'string' },
      device: { type: 'string' },
      backend: { type: 'string' },
      steps: { type: 'string' },
      batch: { type: 'string' },
      seq: { type: 'string' },
      'grad-accum': { type: 'string' },
      lr: { type: 'string' },
      'weight-decay': { type: 'string' },
      'max-grad-norm': { type: 'string' },
      'lora-r': { type: 'string' },
      'lora-alpha': { type: 'string' },
      target: { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
      ...PCAP_OPTIONS,
      json: { type: 'boolean' },
      'verbose-placement': { type: 'boolean' },
    },
    strict: true,
  });
  if ((values.server === undefined) === (values.data === undefined)) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', 'give exactly one of --server URL or --data FILE.ndp');
  const steps = num('steps', values.steps, 50, posInt, 'an integer ≥ 1');
  const batchSize = num('batch', values.batch, 4, posInt, 'an integer ≥ 1');
  const seqLen = num('seq', values.seq, 128, (x) => posInt(x) && x >= 2, 'an integer ≥ 2');
  const gradAccum = num('grad-accum', values['grad-accum'], D.gradAccum, posInt, 'an integer ≥ 1');
  const evalBatchCount = num('eval-batches', values['eval-batches'], 4, (x) => Number.isInteger(x) && x >= 0, 'an integer ≥ 0');
  const evalEvery = num('eval-every', values['eval-every'], 0, (x) => Number.isInteger(x) && x >= 0, 'an integer ≥ 0');
  const crcDrop = num('crc-drop', values['crc-drop'], 0, (x) => x >= 0 && x < 1, 'in [0, 1)');
  const epochs = num('epochs', values.epochs, 100, posInt, 'an integer ≥ 1');
  const loss = values.loss ?? 'repair';
  if (loss !== 'repair' && loss !== 'lossy') throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `--loss ${loss}: repair or lossy`);
  const transport = values.transport ?? 'udp';
  if (transport !== 'udp' && transport !== 'ws') throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `--transport ${transport}: udp or ws`);
  const seed = num('seed', values.seed, D.seed, Number.isInteger, 'an integer');
  const backendName = values.backend ?? 'onnx';
  const makeBackend = BACKENDS[backendName];
  if (makeBackend === undefined) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `--backend ${backendName}: one of ${Object.keys(BACKENDS).join(', ')}`);
  const outDir = resolve(values.out ?? 'ndp-train-out');
  const packing = values.packing === true;
  const tap = openPcapTap(values);

  const source = values.server !== undefined
    ? await serverSource(values.server, { batchSize, seqLen, packing, crcDrop, seed, epochs, transport, tap, loss, datasets: values.dataset, token: values.token })
    : await fileSource(values.data as string, { batchSize, seqLen, packing });
  const closers: (() => Promise<void>)[] = [() => source.close()];
  const backend = makeBackend({ verbosePlacement: values['verbose-placement'] === true });
  closers.unshift(() => backend.close());
  try {
    const options: TrainingBackendOptions = {
      ...D,
      model: values.model ?? D.model,
      device: values.device ?? D.device,
      loraRank: num('lora-r', values['lora-r'], D.loraRank, posInt, 'an integer ≥ 1'),
      loraAlpha: num('lora-alpha', values['lora-alpha'], D.loraAlpha, (x) => x > 0, '> 0'),
      targetModules: (values.target ?? D.targetModules.join(',')).split(',').map((s) => s.trim()).filter((s) => s !== ''),
      learningRate: num('lr', values.lr, D.learningRate, (x) => x > 0, '> 0'),
      weightDecay: num('weight-decay', values['weight-decay'], D.weightDecay, (x) => x >= 0, '≥ 0'),
      maxGradNorm: num('max-grad-norm', values['max-grad-norm'], D.maxGradNorm, (x) => x > 0, '> 0'),
      gradAccum,
      seed,
      ...(source.vocabSize !== undefined ? { tokenizerVocabSize: source.vocabSize } : {}),
    };
    const info = await backend.init(options);
    const log = (line: string): void => void process.stderr.write(line + '\n');
    log(`ndp train: model ${info.model}, device ${info.device}, ${info.trainableParameters} trainable LoRA parameters`);
    for (const note of info.notes) log(`  ${note}`);

    let evalBatches: Batch[] = [];
    if (values['eval-file'] !== undefined) {
      const ev = await fileSource(values['eval-file'], { batchSize, seqLen, packing, epochs: 1 });
      closers.push(() => ev.close());
      evalBatches = await collectBatches(ev.batches, evalBatchCount);
    } else if (values['eval-server'] !== undefined) {
      const ev = await serverSource(values['eval-server'], { batchSize, seqLen, packing, crcDrop: 0, seed, epochs: 1, transport, tap, loss: 'repair', datasets: undefined, token: values.token });
      closers.push(() => ev.close());
      evalBatches = await collectBatches(ev.batches, evalBatchCount);
    }

    const tty = process.stderr.isTTY === true;
    const onStep = (m: StepMetrics): void => {
      const line = `step ${m.step}/${steps}  loss ${fmtLoss(m.loss)}${m.evalLoss !== undefined ? `  eval ${fmtLoss(m.evalLoss)}` : ''}  ${Math.round(m.tokensPerSecond)} tok/s  stall ${m.dataStallMs.toFixed(0)} ms  drops ${m.drops} (frames ${m.frameDrops})`;
      if (tty) process.stderr.write(`\r\x1b[K${line}`);
      else if (m.step === 1 || m.step % 10 === 0 || m.step === steps || m.evalLoss !== undefined) log(line);
    };
    const summary: TrainSummary = await trainLoop(backend, source.batches, {
      steps,
      gradAccum,
      evalEvery,
      evalBatches,
      metricsFile: join(outDir, 'metrics.jsonl'),
      drops: source.drops,
      onStep,
    });
    if (tty) process.stderr.write('\n');
    await backend.saveAdapter(outDir);
    const report = { ...summary, device: info.device, model: info.model, out: outDir };
    writeFileSync(join(outDir, 'summary.json'), JSON.stringify(report, null, 2) + '\n');
    if (values.json === true) process.stdout.write(JSON.stringify(report) + '\n');
    else {
      const list = (r: Readonly<Record<string, number>> | undefined): string => Object.entries(r ?? {}).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
      process.stdout.write(
        [
          `trained ${summary.steps} steps (${summary.microBatches} micro-batches) on ${info.device}${summary.dataEnded ? ' — the data ended first' : ''}`,
          `loss ${fmtLoss(summary.firstLoss)} → ${fmtLoss(summary.lastLoss)}${summary.evalFirst !== undefined ? `; held-out ${fmtLoss(summary.evalFirst)} → ${fmtLoss(summary.evalLast)}` : ''}`,
          `${summary.tokens} tokens, ${Math.round(summary.tokensPerSecond)} tokens/s, data stall ${summary.dataStallPercent.toFixed(1)}% (${summary.dataStallMs.toFixed(0)} ms)`,
          `dropped samples: ${list(summary.drops.samples)}; dropped frames: ${list(summary.drops.frames)}`,
          `adapter and metrics in ${outDir}`,
        ].join('\n') + '\n',
      );
    }
    return summary.steps > 0 ? 0 : 1;
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    tap?.close();
  }
}
