/**
 * `TrainingBackend` on ONNX Runtime: generated LoRA step graphs (lora-graphs.ts) run by
 * `LoraSession` inside a worker thread (training-worker.ts), so `step()` leaves the event loop free
 * for the network receive path.
 */
import { Worker } from 'node:worker_threads';
import type { Batch } from '../batch.js';
import { NdpError, type NdpErrorCode } from '../../src/protocol/errors.js';
import type { EvalResult, InitInfo, StepResult, TrainingBackend, TrainingBackendOptions } from './training-backend.js';
import type { WorkerRequest } from './training-worker.js';
import { writeAdapter } from './peft-adapter.js';
import type { NamedTensor } from './safetensors.js';

/** The defaults of `ndp train`. */
export const DEFAULT_TRAINING_OPTIONS: TrainingBackendOptions = {
  model: 'tiny',
  device: 'auto',
  loraRank: 8,
  loraAlpha: 16,
  targetModules: ['q_proj', 'v_proj'],
  learningRate: 1e-3,
  weightDecay: 0,
  maxGradNorm: 1,
  gradAccum: 1,
  seed: 0,
};

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: { code?: string; message: string } };
type DistributiveOmit<T, K extends keyof never> = T extends unknown ? Omit<T, K> : never;

/**
 * The code a worker-thread error surfaces with: its own NDP_ERR_* code, else NDP_ERR_WORKER_FAILED
 * (an ONNX Runtime failure has no code, and a Node error's `ENOENT`-style code is not one of ours).
 */
function stableCode(code: string | undefined): NdpErrorCode {
  return code !== undefined && code.startsWith('NDP_ERR_') ? (code as NdpErrorCode) : 'NDP_ERR_WORKER_FAILED';
}

export class OnnxTrainingBackend implements TrainingBackend {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private options: TrainingBackendOptions | undefined;

  /** `verbosePlacement` logs ONNX Runtime's node placement (which EP runs each node). */
  constructor(private readonly extra: { verbosePlacement?: boolean } = {}) {}

  private request(req: DistributiveOmit<WorkerRequest, 'id'>): Promise<unknown> {
    const worker = this.worker;
    if (worker === undefined) return Promise.reject(new NdpError('NDP_ERR_BAD_TRAIN_OPTION', 'training backend used before init or after close'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ ...req, id });
    });
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  async init(options: TrainingBackendOptions): Promise<InitInfo> {
    this.options = options;
    const worker = new Worker(new URL('./training-worker.js', import.meta.url));
    this.worker = worker;
    worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      if (p === undefined) return;
      this.pending.delete(reply.id);
      if (reply.ok) p.resolve(reply.result);
      else p.reject(new NdpError(stableCode(reply.error.code), reply.error.message));
    });
    worker.on('error', (err) => this.failAll(new NdpError('NDP_ERR_WORKER_FAILED', `training worker thread failed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => {
      this.worker = undefined;
      this.failAll(new NdpError('NDP_ERR_WORKER_EXITED', `training worker thread exited with code ${code}`));
    });
    try {
      return (await this.request({ type: 'init', options: { ...options, verbosePlacement: this.extra.verbosePlacement } })) as InitInfo;
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  async step(batch: Batch): Promise<StepResult> {
    return (await this.request({ type: 'step', batch: plainBatch(batch) })) as StepResult;
  }

  async evaluate(batch: Batch): Promise<EvalResult> {
    return (await this.request({ type: 'evaluate', batch: plainBatch(batch) })) as EvalResult;
  }

  async saveAdapter(dir: string): Promise<void> {
    const o = this.options;
    if (o === undefined) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', 'saveAdapter before init');
    const tensors = new Map((await this.request({ type: 'adapter' })) as [string, NamedTensor][]);
    writeAdapter(dir, { rank: o.loraRank, alpha: o.loraAlpha, targets: o.targetModules, baseModel: o.model }, tensors);
  }

  async close(): Promise<void> {
    const worker = this.worker;
    if (worker === undefined) return;
    try {
      await this.request({ type: 'close' });
    } finally {
      this.worker = undefined;
      await worker.terminate();
    }
  }
}

/** Only the Batch fields cross the thread boundary (a ClientBatch also carries cursors). */
function plainBatch(b: Batch): Batch {
  return {
    batchSize: b.batchSize,
    seqLen: b.seqLen,
    inputIds: b.inputIds,
    attentionMask: b.attentionMask,
    labels: b.labels,
    positionIds: b.positionIds,
    documentIds: b.documentIds,
    sampleIndices: b.sampleIndices,
    tokenCount: b.tokenCount,
  };
}
