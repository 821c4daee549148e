/**
 * The batcher: turns delivered samples into fixed-shape `Batch`es a training session takes without
 * another copy (client/batch.ts). Three layouts:
 * - pad to the longest sample of the batch (`seqLen` unset), capped at `maxSeqLen`;
 * - pad to a fixed `seqLen`;
 * - pack several samples per row (`packing: true`, needs `seqLen`): each token carries its position
 *   within its own document and the 1-based id of that document in the row, so the session's
 *   attention mask never lets one document see another.
 * Labels are the token where the loss mask is 1 and -100 elsewhere (mask 0 and padding); they are
 * not shifted (the session shifts). Samples longer than a row follow `truncation`.
 */
import type { Sample } from '../src/dataset/sample.js';
import type { Batch } from './batch.js';

/** Label value a loss function ignores (PyTorch's and the LoRA graph's convention). */
export const IGNORE_LABEL = -100;

export type TruncationPolicy = 'right' | 'left' | 'drop';

export interface BatcherOptions {
  /** Rows per batch. Required, ≥ 1. */
  readonly batchSize: number;
  /** Fixed row length. Unset: each batch is padded to its longest sample (at most `maxSeqLen`). Required with `packing`. */
  readonly seqLen?: number;
  /** Row length cap when padding to the longest. Defaults to 4096. */
  readonly maxSeqLen?: number;
  /** Pack several samples per row (needs `seqLen`). Defaults to false. */
  readonly packing?: boolean;
  /**
   * What happens to a sample longer than a row: `right` keeps its first tokens, `left` its last
   * tokens, `drop` drops it (counted as `too_long` by the caller). Defaults to `right`.
   */
  readonly truncation?: TruncationPolicy;
  /** Token id written into padding positions. Defaults to 0. */
  readonly padId?: number;
}

/** What one row holds before the batch is materialised: whole samples, possibly truncated. */
interface RowPlan {
  readonly samples: Sample[];
  used: number;
}

/** Outcome of `Batcher.push`: full batches ready now, and whether the sample was refused. */
export interface PushResult {
  readonly batches: Batch[];
  /** True when `truncation: 'drop'` refused the sample. */
  readonly droppedTooLong: boolean;
  /** Tokens cut off by truncation. */
  readonly truncatedTokens: number;
}

export class Batcher {
  readonly batchSize: number;
  readonly seqLen: number | undefined;
  readonly maxSeqLen: number;
  readonly packing: boolean;
  readonly truncation: TruncationPolicy;
  readonly padId: number;
  private rows: RowPlan[] = [];

  constructor(options: BatcherOptions) {
    const { batchSize, seqLen, packing = false, truncation = 'right', padId = 0, maxSeqLen = 4096 } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be an integer ≥ 1, got ${batchSize}`);
    if (seqLen !== undefined && (!Number.isInteger(seqLen) || seqLen < 1)) throw new RangeError(`seqLen must be an integer ≥ 1, got ${seqLen}`);
    if (!Number.isInteger(maxSeqLen) || maxSeqLen < 1) throw new RangeError(`maxSeqLen must be an integer ≥ 1, got ${maxSeqLen}`);
    if (packing && seqLen === undefined) throw new RangeError('packing needs a fixed seqLen');
    this.batchSize = batchSize;
    this.seqLen = seqLen;
    this.maxSeqLen = seqLen ?? maxSeqLen;
    this.packing = packing;
    this.truncation = truncation;
    this.padId = padId;
  }

  /** Samples waiting for a batch. */
  get pendingSamples(): number {
    let n = 0;
    for (const row of this.rows) n += row.samples.length;
    return n;
  }

  /** Adds one sample; returns the batches it completed (zero or one). */
  push(sample: Sample): PushResult {
    const limit = this.maxSeqLen;
    let truncatedTokens = 0;
    let fitted = sample;
    if (sample.tokens.length > limit) {
      if (this.truncation === 'drop') return { batches: [], droppedTooLong: true, truncatedTokens: 0 };
      truncatedTokens = sample.tokens.length - limit;
      fitted = truncate(sample, limit, this.truncation);
    }
    const batches: Batch[] = [];
    const last = this.rows[this.rows.length - 1];
    if (this.packing && last !== undefined && last.used + fitted.tokens.length <= limit) {
      last.samples.push(fitted);
      last.used += fitted.tokens.length;
    } else {
      if (this.rows.length === this.batchSize) batches.push(this.takeBatch());
      this.rows.push({ samples: [fitted], used: fitted.tokens.length });
      // Without packing a batch is complete as soon as its last row is taken.
      if (!this.packing && this.rows.length === this.batchSize) batches.push(this.takeBatch());
    }
    return { batches, droppedTooLong: false, truncatedTokens };
  }

  /** The partial batch (padded with empty rows), or undefined when nothing waits. */
  flush(): Batch | undefined {
    return this.rows.length === 0 ? undefined : this.takeBatch();
  }

  private takeBatch(): Batch {
    const rows = this.rows;
    this.rows = [];
    return materialise(rows, this.batchSize, this.seqLen ?? Math.max(1, ...rows.map((r) => r.used)), this.padId, this.packing);
  }
}

function truncate(sample: Sample, limit: number, policy: 'right' | 'left'): Sample {
  const from = policy === 'right' ? 0 : sample.tokens.length - limit;
  return { index: sample.index, src: sample.src, tokens: sample.tokens.subarray(from, from + limit), lossMask: sample.lossMask.subarray(from, from + limit) };
}

/** Builds the batch's arrays once; every position is written exactly once (pad or token). */
function materialise(rows: readonly RowPlan[], batchSize: number, seqLen: number, padId: number, packing: boolean): Batch {
  const size = batchSize * seqLen;
  const inputIds = new Int32Array(size).fill(padId);
  const attentionMask = new Int32Array(size);
  const labels = new Int32Array(size).fill(IGNORE_LABEL);
  const positionIds = new Int32Array(size);
  const documentIds = new Int32Array(size);
  const sampleIndices: number[] = [];
  let tokenCount = 0;
  rows.forEach((row, r) => {
    let at = r * seqLen;
    row.samples.forEach((sample, d) => {
      const { tokens, lossMask } = sample;
      const documentId = packing ? d + 1 : 1;
      inputIds.set(tokens, at);
      for (let i = 0; i < tokens.length; i++) {
        attentionMask[at + i] = 1;
        if (lossMask[i] === 1) labels[at + i] = tokens[i]!;
        positionIds[at + i] = i;
        documentIds[at + i] = documentId;
      }
      at += tokens.length;
      tokenCount += tokens.length;
      sampleIndices.push(sample.index);
    });
  });
  return { batchSize, seqLen, inputIds, attentionMask, labels, positionIds, documentIds, sampleIndices, tokenCount };
}
