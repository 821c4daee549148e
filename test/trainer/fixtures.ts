/** Batches and small model configs shared by the trainer tests. */
import type { Batch } from '../../client/batch.js';
import type { ModelConfig } from '../../client/trainer/model-config.js';

/** A model small enough for float64 finite differences. */
export const MICRO_CONFIG: ModelConfig = {
  name: 'micro',
  vocabSize: 53,
  hiddenSize: 16,
  intermediateSize: 24,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 4,
  ropeTheta: 10_000,
  rmsNormEps: 1e-6,
  tieWordEmbeddings: true,
  qkvBias: true,
  qkNorm: false,
};

/**
 * Rows of `seqLen` tokens: row 0 holds two packed documents, the other rows one document followed by
 * padding, with a prompt (-100) prefix; ids are deterministic below `vocab`.
 */
export function makeBatch(batchSize: number, seqLen: number, vocab: number, seed = 1): Batch {
  const n = batchSize * seqLen;
  const inputIds = new Int32Array(n);
  const labels = new Int32Array(n);
  const attentionMask = new Int32Array(n);
  const positionIds = new Int32Array(n);
  const documentIds = new Int32Array(n);
  let tokenCount = 0;
  for (let r = 0; r < batchSize; r++) {
    const length = r === 0 ? seqLen : seqLen - 1 - (r % Math.max(1, seqLen >> 2));
    const split = r === 0 ? Math.floor(seqLen / 2) : length;
    for (let t = 0; t < seqLen; t++) {
      const i = r * seqLen + t;
      if (t >= length) {
        inputIds[i] = 0;
        labels[i] = -100;
        continue;
      }
      const doc = t < split ? 1 : 2;
      const pos = t < split ? t : t - split;
      inputIds[i] = (seed * 31 + r * 17 + t * 7 + t * t) % vocab;
      labels[i] = pos < 1 ? -100 : (inputIds[i] as number);
      attentionMask[i] = 1;
      positionIds[i] = pos;
      documentIds[i] = doc;
      tokenCount++;
    }
  }
  return { batchSize, seqLen, inputIds, attentionMask, labels, positionIds, documentIds, sampleIndices: [], tokenCount };
}
