/**
 * Equal steps per epoch (NDP.md §7, "Receiver"): in data-parallel training every rank must run the
 * same number of optimizer steps, or the collective ops hang; drops differ between ranks, so sample
 * counts differ. Rule: every rank yields exactly `steps` batches per epoch, where
 * `steps = stepsPerEpoch ?? ceil(samplesPerEpoch / batchSize)` and `samplesPerEpoch` is the per-rank
 * count from ACCEPT (the same on every rank). Rows an epoch cannot fill because samples were dropped
 * are filled by recycling the epoch's first delivered samples (bounded pool, in order, cyclically),
 * as PyTorch's DistributedSampler pads a short shard; each batch reports how many rows are recycled.
 * With packing the count of batches depends on lengths, so `stepsPerEpoch` must be given for equal
 * steps; samples that would need a batch beyond it are dropped and counted (`over_steps`).
 */
import type { Sample } from '../src/dataset/sample.js';
import type { Batch } from './batch.js';
import { Batcher, type BatcherOptions } from './batcher.js';

export interface EqualStepsOptions {
  /** Batches per epoch on every rank. */
  readonly steps: number;
  /** Samples kept from the start of each epoch for recycling. Defaults to 4 × batchSize. */
  readonly recyclePool?: number;
  /** Step the first epoch starts at (a process resumed mid-epoch). Defaults to 0. */
  readonly startStep?: number;
  /** Fill short epochs up to `steps` (the rule); false only flushes the last partial batch. Defaults to true. */
  readonly fill?: boolean;
}

/** A batch plus how many of its samples are recycled fill-ins. */
export interface EpochBatch {
  readonly batch: Batch;
  readonly epoch: number;
  readonly step: number;
  readonly recycled: number;
}

export class EqualStepsBatcher {
  readonly steps: number;
  private readonly batcher: Batcher;
  private readonly poolLimit: number;
  private readonly fill: boolean;
  private epoch: number | undefined;
  private step = 0;
  private pool: Sample[] = [];
  private recycledInBatch = 0;
  /** Samples refused because the epoch already yielded `steps` batches (packing only). */
  overSteps = 0;
  /** Samples refused by `truncation: 'drop'`. */
  tooLong = 0;
  /** Tokens cut off by truncation. */
  truncatedTokens = 0;

  constructor(batcherOptions: BatcherOptions, options: EqualStepsOptions) {
    if (!Number.isInteger(options.steps) || options.steps < 0) throw new RangeError(`steps per epoch must be an integer ≥ 0, got ${options.steps}`);
    this.batcher = new Batcher(batcherOptions);
    this.steps = options.steps;
    this.poolLimit = options.recyclePool ?? 4 * batcherOptions.batchSize;
    this.step = options.startStep ?? 0;
    this.fill = options.fill ?? true;
  }

  /** The epoch batches are being built for (undefined before the first sample or `endEpoch`). */
  get currentEpoch(): number | undefined {
    return this.epoch;
  }

  /** The samples per epoch → steps rule for unpacked batches. */
  static stepsFor(samplesPerEpoch: number, batchSize: number): number {
    return Math.ceil(samplesPerEpoch / batchSize);
  }

  /** Adds a delivered sample of `epoch`; returns the batches completed (finishing earlier epochs first). */
  push(sample: Sample, epoch: number): EpochBatch[] {
    const out: EpochBatch[] = [];
    // Epochs that passed without a delivered sample still get their steps.
    while (this.epoch !== undefined && this.epoch < epoch) out.push(...this.endEpoch());
    this.epoch = epoch;
    if (this.step >= this.steps) {
      this.overSteps++;
      return out;
    }
    if (this.add(sample, out) && this.pool.length < this.poolLimit) this.pool.push(sample);
    return out;
  }

  /**
   * Ends the current epoch (or `epoch`, when no sample of it was delivered): yields its remaining
   * batches, filled with recycled samples, up to `steps`. The next epoch is `epoch + 1`.
   */
  endEpoch(epoch?: number): EpochBatch[] {
    const out: EpochBatch[] = [];
    this.epoch ??= epoch;
    if (this.epoch === undefined) return out;
    const ended = this.epoch;
    let next = 0;
    if (!this.fill) {
      const partial = this.batcher.flush();
      if (partial !== undefined && this.step < this.steps) out.push(this.emit(partial));
    }
    while (this.fill && this.step < this.steps) {
      const recycled = this.pool[next % Math.max(1, this.pool.length)];
      if (recycled === undefined) {
        // Nothing delivered in this epoch: all-padding batches (no tokens, no loss) keep the count.
        const batch = this.batcher.flush() ?? emptyBatch(this.batcher);
        out.push(this.emit(batch));
        continue;
      }
      next++;
      this.recycledInBatch++;
      this.add(recycled, out);
    }
    // Whatever a packed row still holds past the last step is over the cap.
    this.overSteps += this.batcher.pendingSamples - this.recycledInBatch;
    this.batcher.flush();
    this.recycledInBatch = 0;
    this.pool = [];
    this.step = 0;
    this.epoch = ended + 1;
    return out;
  }

  /** Returns false when the batcher refused the sample (too long under `truncation: 'drop'`). */
  private add(sample: Sample, out: EpochBatch[]): boolean {
    const result = this.batcher.push(sample);
    if (result.droppedTooLong) {
      this.tooLong++;
      return false;
    }
    this.truncatedTokens += result.truncatedTokens;
    for (const batch of result.batches) {
      if (this.step < this.steps) out.push(this.emit(batch));
    }
    return true;
  }

  private emit(batch: Batch): EpochBatch {
    // The sample just pushed that triggered a packed batch belongs to the next batch: count only rows in this one.
    const recycled = Math.min(this.recycledInBatch, batch.sampleIndices.length);
    this.recycledInBatch -= recycled;
    return { batch, epoch: this.epoch ?? 0, step: this.step++, recycled };
  }
}

function emptyBatch(batcher: Batcher): Batch {
  const seqLen = batcher.seqLen ?? 1;
  const size = batcher.batchSize * seqLen;
  return {
    batchSize: batcher.batchSize,
    seqLen,
    inputIds: new Int32Array(size).fill(batcher.padId),
    attentionMask: new Int32Array(size),
    labels: new Int32Array(size).fill(-100),
    positionIds: new Int32Array(size),
    documentIds: new Int32Array(size),
    sampleIndices: [],
    tokenCount: 0,
  };
}
