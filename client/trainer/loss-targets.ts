/**
 * Host-side preparation of a batch for the step graphs: shifts the labels (position t predicts the
 * label at t+1, as Hugging Face's causal-LM loss does), keeps only pairs inside one document (a
 * packed row's next document is not a continuation) and checks ids against the vocabulary.
 */
import type { Batch } from '../batch.js';
import { NdpError } from '../../src/protocol/errors.js';

/** Label value that excludes a position from the loss. */
export const IGNORE_INDEX = -100;

export interface LossTargets {
  /** Flat indices row·T + t of the positions that predict a label. */
  readonly positions: Int32Array;
  /** The predicted label per position. */
  readonly targets: Int32Array;
  /** documentIds with padding (attentionMask 0) forced to 0. */
  readonly documentIds: Int32Array;
  /** inputIds with padding replaced by 0, so a pad id outside the vocabulary cannot reach the embedding lookup. */
  readonly inputIds: Int32Array;
}

export function lossTargets(batch: Batch, vocabSize: number): LossTargets {
  const { batchSize: B, seqLen: T, inputIds, labels, attentionMask } = batch;
  const n = B * T;
  for (const [name, arr] of [['inputIds', inputIds], ['labels', labels], ['attentionMask', attentionMask], ['positionIds', batch.positionIds], ['documentIds', batch.documentIds]] as const) {
    if (arr.length !== n) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `batch ${name} has ${arr.length} values, expected ${B}×${T}`);
  }
  const documentIds = new Int32Array(n);
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const id = inputIds[i] as number;
    if (attentionMask[i] !== 0 && (id < 0 || id >= vocabSize)) throw new NdpError('NDP_ERR_TOKEN_OUT_OF_RANGE', `token id ${id} at row ${Math.floor(i / T)}, position ${i % T} is outside the model vocabulary (${vocabSize})`);
    documentIds[i] = attentionMask[i] === 0 ? 0 : (batch.documentIds[i] as number);
    ids[i] = attentionMask[i] === 0 ? 0 : id;
  }
  const positions: number[] = [];
  const targets: number[] = [];
  for (let r = 0; r < B; r++) {
    for (let t = 0; t + 1 < T; t++) {
      const i = r * T + t;
      const label = labels[i + 1] as number;
      if (label === IGNORE_INDEX) continue;
      const doc = documentIds[i] as number;
      if (doc === 0 || documentIds[i + 1] !== doc) continue;
      if (label < 0 || label >= vocabSize) throw new NdpError('NDP_ERR_TOKEN_OUT_OF_RANGE', `label ${label} at row ${r}, position ${t + 1} is outside the model vocabulary (${vocabSize})`);
      positions.push(i);
      targets.push(label);
    }
  }
  return { positions: Int32Array.from(positions), targets: Int32Array.from(targets), documentIds, inputIds: ids };
}
