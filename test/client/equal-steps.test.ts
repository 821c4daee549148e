import t from 'tap';
import { EqualStepsBatcher } from '../../client/equal-steps.js';
import type { Sample } from '../../src/dataset/sample.js';

function sample(index: number, length = 3): Sample {
  return { index, src: 1, tokens: new Int32Array(length).fill(index + 1), lossMask: new Uint8Array(length).fill(1) };
}

function run(delivered: number[], samplesPerEpoch: number, batchSize: number) {
  const steps = EqualStepsBatcher.stepsFor(samplesPerEpoch, batchSize);
  const b = new EqualStepsBatcher({ batchSize, seqLen: 4 }, { steps });
  const out = [];
  for (const i of delivered) out.push(...b.push(sample(i), 0));
  out.push(...b.endEpoch(0));
  return out;
}

t.test('two ranks with unequal drops yield the same number of batches', (t) => {
  const rankA = run([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 10, 4);
  const rankB = run([0, 2, 5, 9], 10, 4);
  t.equal(rankA.length, 3);
  t.equal(rankB.length, 3);
  t.equal(rankA.reduce((n, b) => n + b.recycled, 0), 2, 'the remainder row is filled by recycling');
  t.equal(rankB.reduce((n, b) => n + b.recycled, 0), 8);
  t.same(rankB[1]!.batch.sampleIndices, [0, 2, 5, 9], 'recycled in delivery order');
  t.ok(rankB.every((b) => b.batch.sampleIndices.length === 4), 'every batch full');
  t.end();
});

t.test('an epoch with nothing delivered still yields its steps, as all-padding batches', (t) => {
  const out = run([], 8, 4);
  t.equal(out.length, 2);
  t.equal(out[0]!.batch.tokenCount, 0);
  t.ok(out[0]!.batch.labels.every((l) => l === -100));
  t.end();
});

t.test('a new epoch closes the previous one', (t) => {
  const b = new EqualStepsBatcher({ batchSize: 2, seqLen: 4 }, { steps: 2 });
  const out = [...b.push(sample(0), 0), ...b.push(sample(1), 1), ...b.push(sample(2), 3), ...b.endEpoch()];
  t.same(out.map((x) => [x.epoch, x.step]), [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1], [3, 0], [3, 1]], 'epoch 2 had no sample and still yields its steps');
  t.end();
});

t.test('packing with a step cap counts samples over it', (t) => {
  const b = new EqualStepsBatcher({ batchSize: 1, seqLen: 4, packing: true }, { steps: 1 });
  const out = [...b.push(sample(0, 4), 0), ...b.push(sample(1, 4), 0), ...b.push(sample(2, 4), 0), ...b.endEpoch()];
  t.equal(out.length, 1);
  t.equal(b.overSteps, 2);
  t.end();
});

t.test('the recycle pool is bounded: fill-ins cycle over at most recyclePool samples', (t) => {
  const b = new EqualStepsBatcher({ batchSize: 4, seqLen: 4 }, { steps: 2, recyclePool: 2 });
  const out = [...b.push(sample(0), 0), ...b.push(sample(1), 0), ...b.push(sample(2), 0), ...b.endEpoch()];
  t.same(out.map((x) => x.batch.sampleIndices), [[0, 1, 2, 0], [1, 0, 1, 0]], 'only samples 0 and 1 are kept for recycling');
  t.same(out.map((x) => x.recycled), [1, 4]);
  t.end();
});
