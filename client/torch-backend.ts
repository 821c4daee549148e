/**
 * `TrainingBackend` on PyTorch (`ndp train --backend torch`): the TypeScript client keeps all
 * transport work and hands ready batches to a Python worker (python/ndp_torch/worker.py) over the
 * worker channel (NDP.md §11); the worker runs the LoRA step with PyTorch on CUDA or CPU.
 *
 * Same model as the ONNX session: for a preset the seeded base weights are generated here by the
 * same code the ONNX session uses (trainer/base-weights.ts) and sent with `init`, so both engines
 * start from identical weights; a checkpoint folder is loaded by the worker itself (transformers +
 * peft when installed there, else the worker's built-in Qwen2 module). Same outputs: StepResult per
 * micro-batch and a PEFT-layout adapter.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import type { Batch } from './batch.js';
import { NdpError } from '../src/protocol/errors.js';
import type { NamedTensor } from './tensor-frame.js';
import { randomBaseWeights } from './trainer/base-weights.js';
import { describeModel, hfConfigFields, resolveModelConfig, type ModelConfig } from './trainer/model-config.js';
import type { EvalResult, InitInfo, StepResult, TrainingBackend, TrainingBackendOptions } from './trainer/training-backend.js';
import { WorkerChannel, type WorkerChannelOptions, type WorkerMessage } from './worker-channel.js';

/** The environment variable that names the Python interpreter to use. */
export const PYTHON_ENV = 'NDP_PYTHON';

export interface TorchBackendOptions {
  /** Python interpreter with torch. Defaults to `$NDP_PYTHON`, else the first of python3, /usr/bin/python3, python that imports torch. */
  readonly python: string;
  /** `fp32` (default: the ONNX session's precision) or `bf16` (autocast on CUDA). */
  readonly precision: 'fp32' | 'bf16';
  /** Worker channel settings (timeouts, in-flight window, …); see WorkerChannelOptions for defaults. */
  readonly channel: Partial<Omit<WorkerChannelOptions, 'command'>>;
}

/** The interpreters tried, in order, when no python is given (Debian's python3-torch lives in /usr/bin/python3). */
export function pythonCandidates(): string[] {
  const fromEnv = process.env[PYTHON_ENV];
  return [...new Set([...(fromEnv ? [fromEnv] : []), 'python3', '/usr/bin/python3', 'python'])];
}

/** Resolves with torch's version when `python` can import torch, undefined otherwise. Bounded by `timeoutMs` (default 120 s: a cold torch import is slow). */
export function torchVersion(python: string, timeoutMs = 120_000): Promise<string | undefined> {
  return new Promise((resolvePromise) => {
    execFile(python, ['-c', 'import torch; print(torch.__version__)'], { timeout: timeoutMs }, (err, stdout) => {
      resolvePromise(err === null ? stdout.trim() : undefined);
    });
  });
}

/** The first interpreter of `candidates` that imports torch, with its torch version. */
export async function findTorchPython(candidates: readonly string[] = pythonCandidates()): Promise<{ python: string; torch: string } | undefined> {
  for (const python of candidates) {
    const torch = await torchVersion(python);
    if (torch !== undefined) return { python, torch };
  }
  return undefined;
}

/** The architecture in the snake_case keys of a Hugging Face config (NDP.md §11.3 `init.model`). */
export function modelMessage(c: ModelConfig): Record<string, unknown> {
  return { preset: c.name, ...hfConfigFields(c), qkv_bias: c.qkvBias, qk_norm: c.qkNorm };
}

function num(message: WorkerMessage, key: string): number {
  const v = message[key];
  return typeof v === 'number' ? v : NaN;
}

/** What the worker channel cost, summed over the batches sent (for benchmarks and logs). */
export interface ChannelStats {
  readonly batches: number;
  /** Worker time from a batch's message to its last tensor byte: socket reads and CRC-16 checks. */
  readonly receiveMs: number;
}

export class TorchTrainingBackend implements TrainingBackend {
  private channel: WorkerChannel | undefined;
  private batches = 0;
  private receiveMs = 0;

  get channelStats(): ChannelStats {
    return { batches: this.batches, receiveMs: this.receiveMs };
  }

  private count(r: WorkerMessage): void {
    this.batches++;
    this.receiveMs += typeof r.receive_ms === 'number' ? r.receive_ms : 0;
  }

  constructor(private readonly extra: Partial<TorchBackendOptions> = {}) {}

  async init(options: TrainingBackendOptions): Promise<InitInfo> {
    if (this.channel !== undefined) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', 'torch backend initialised twice');
    if (options.device !== 'auto' && options.device !== 'cpu' && !options.device.startsWith('cuda')) {
      throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `--device ${options.device}: the torch backend runs on cpu or cuda (auto picks cuda when torch sees a GPU)`);
    }
    const config = resolveModelConfig(options.model);
    const notes: string[] = [];
    let python = this.extra.python;
    if (python === undefined) {
      const found = await findTorchPython();
      if (found === undefined) {
        throw new NdpError('NDP_ERR_WORKER_START', `no Python with torch found (tried ${pythonCandidates().join(', ')}): install PyTorch (Debian: apt-get install python3-torch) or set ${PYTHON_ENV}`);
      }
      python = found.python;
      notes.push(`python ${python} (torch ${found.torch})`);
    }
    const channel = await WorkerChannel.start({ ...this.extra.channel, command: [python, '-m', 'ndp_torch.worker'] });
    this.channel = channel;
    const checkpoint = config.checkpointDir;
    const weights: NamedTensor[] = [];
    if (checkpoint === undefined) {
      for (const [name, tensor] of randomBaseWeights(config, options.seed)) weights.push({ name, shape: tensor.shape, data: tensor.data });
    }
    try {
      const ready = await channel.request(
        {
          w: 'init',
          ...(checkpoint !== undefined ? { checkpoint: resolve(checkpoint) } : { model: modelMessage(config) }),
          device: options.device,
          lora: { r: options.loraRank, alpha: options.loraAlpha, targets: [...options.targetModules] },
          optim: { lr: options.learningRate, weight_decay: options.weightDecay, max_grad_norm: options.maxGradNorm, grad_accum: options.gradAccum },
          seed: options.seed,
          precision: this.extra.precision ?? 'fp32',
          vocab: options.tokenizerVocabSize ?? null,
        },
        weights,
      );
      const workerNotes = Array.isArray(ready.notes) ? ready.notes.map(String) : [];
      return {
        device: String(ready.device),
        model: checkpoint === undefined ? `${describeModel(config)} on torch (${String(ready.backend)})` : String(ready.model),
        vocabSize: num(ready, 'vocab_size'),
        trainableParameters: num(ready, 'trainable'),
        notes: [...notes, `torch ${String(ready.torch)}, ${String(ready.backend)} model`, ...workerNotes],
      };
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private open(): WorkerChannel {
    if (this.channel === undefined) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', 'torch backend used before init or after close');
    return this.channel;
  }

  async step(batch: Batch): Promise<StepResult> {
    const r = (await this.open().sendBatch(batch, 'train'))!;
    this.count(r);
    const gradNorm = typeof r.grad_norm === 'number' ? r.grad_norm : undefined;
    return {
      loss: num(r, 'loss'),
      lossTokens: num(r, 'loss_tokens'),
      updated: r.updated === true,
      ...(gradNorm !== undefined ? { gradNorm } : {}),
      optimizerStep: num(r, 'step'),
      computeMs: num(r, 'compute_ms'),
    };
  }

  async evaluate(batch: Batch): Promise<EvalResult> {
    const r = (await this.open().sendBatch(batch, 'eval'))!;
    this.count(r);
    return { loss: num(r, 'loss'), lossTokens: num(r, 'loss_tokens') };
  }

  async saveAdapter(dir: string): Promise<void> {
    await this.open().request({ w: 'save', dir: resolve(dir) });
  }

  async close(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    await channel?.close();
  }
}
