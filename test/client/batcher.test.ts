import t from 'tap';
import { Batcher, IGNORE_LABEL } from '../../client/batcher.js';
import type { Sample } from '../../src/dataset/sample.js';

function sample(index: number, length: number, maskFrom = 0): Sample {
  const tokens = Int32Array.from({ length }, (_, i) => 1000 * (index + 1) + i);
  const lossMask = Uint8Array.from({ length }, (_, i) => (i >= maskFrom ? 1 : 0));
  return { index, src: 1, tokens, lossMask };
}

t.test('pads to the longest sample, labels -100 on padding and masked tokens', (t) => {
  const b = new Batcher({ batchSize: 2, padId: 7 });
  t.same(b.push(sample(0, 3, 1)).batches, []);
  const [batch] = b.push(sample(1, 5)).batches;
  t.ok(batch);
  if (!batch) return t.end();
  t.equal(batch.seqLen, 5);
  t.same([...batch.inputIds], [1000, 1001, 1002, 7, 7, 2000, 2001, 2002, 2003, 2004]);
  t.same([...batch.attentionMask], [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
  t.same([...batch.labels], [IGNORE_LABEL, 1001, 1002, IGNORE_LABEL, IGNORE_LABEL, 2000, 2001, 2002, 2003, 2004]);
  t.same([...batch.positionIds], [0, 1, 2, 0, 0, 0, 1, 2, 3, 4]);
  t.same([...batch.documentIds], [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
  t.same(batch.sampleIndices, [0, 1]);
  t.equal(batch.tokenCount, 8);
  t.equal(b.pendingSamples, 0);
  t.end();
});

t.test('fixed seqLen pads every row to it; flush pads missing rows', (t) => {
  const b = new Batcher({ batchSize: 3, seqLen: 4 });
  b.push(sample(0, 2));
  const batch = b.flush();
  t.ok(batch);
  t.equal(batch!.inputIds.length, 12);
  t.same([...batch!.attentionMask], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.equal(b.flush(), undefined, 'nothing left');
  t.end();
});

t.test('truncation policies at the limit', (t) => {
  const right = new Batcher({ batchSize: 1, seqLen: 4 });
  const exact = right.push(sample(0, 4));
  t.equal(exact.truncatedTokens, 0, 'a sample of exactly seqLen is not truncated');
  const cut = right.push(sample(1, 6));
  t.equal(cut.truncatedTokens, 2);
  t.same([...cut.batches[0]!.inputIds], [2000, 2001, 2002, 2003]);
  const left = new Batcher({ batchSize: 1, seqLen: 4, truncation: 'left' });
  t.same([...left.push(sample(1, 6)).batches[0]!.inputIds], [2002, 2003, 2004, 2005]);
  const drop = new Batcher({ batchSize: 1, seqLen: 4, truncation: 'drop' });
  const refused = drop.push(sample(1, 5));
  t.equal(refused.droppedTooLong, true);
  t.same(refused.batches, []);
  t.equal(drop.push(sample(2, 4)).batches.length, 1);
  const longest = new Batcher({ batchSize: 1, maxSeqLen: 3 });
  t.equal(longest.push(sample(0, 9)).batches[0]!.seqLen, 3, 'maxSeqLen caps pad-to-longest');
  t.end();
});

t.test('packing: several documents per row, positions restart, document ids never cross', (t) => {
  const b = new Batcher({ batchSize: 2, seqLen: 6, packing: true });
  t.same(b.push(sample(0, 3)).batches, []);
  t.same(b.push(sample(1, 2)).batches, []);
  t.same(b.push(sample(2, 4)).batches, [], 'does not fit row 0: opens row 1');
  t.same(b.push(sample(3, 2)).batches, []);
  const [batch] = b.push(sample(4, 3)).batches;
  t.ok(batch, 'a sample that fits no row completes the batch');
  t.same([...batch!.documentIds], [1, 1, 1, 2, 2, 0, 1, 1, 1, 1, 2, 2]);
  t.same([...batch!.positionIds], [0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 0, 1]);
  t.same(batch!.sampleIndices, [0, 1, 2, 3]);
  t.equal(batch!.tokenCount, 11);
  t.equal(b.pendingSamples, 1, 'the sample that did not fit waits for the next batch');
  t.throws(() => new Batcher({ batchSize: 1, packing: true }), /packing needs a fixed seqLen/);
  t.throws(() => new Batcher({ batchSize: 0 }), RangeError);
  t.end();
});
