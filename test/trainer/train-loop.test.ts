import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Batch } from '../../client/batch.js';
import { OnnxTrainingBackend, DEFAULT_TRAINING_OPTIONS } from '../../client/trainer/onnx-training-backend.js';
import { trainLoop } from '../../client/trainer/train-loop.js';
import { MICRO_CONFIG, makeBatch } from './fixtures.js';
import { writeCheckpoint } from './checkpoint-fixture.js';

t.test('the data ending mid-group: whole groups are steps, the partial group is not; metrics and summary say so', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ndp-loop-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeCheckpoint(join(dir, 'model'), MICRO_CONFIG);
  const backend = new OnnxTrainingBackend();
  await backend.init({ ...DEFAULT_TRAINING_OPTIONS, model: join(dir, 'model'), device: 'cpu', gradAccum: 2 });
  t.teardown(() => backend.close());
  async function* five(): AsyncGenerator<Batch> {
    for (let i = 0; i < 5; i++) yield makeBatch(2, 8, MICRO_CONFIG.vocabSize, i);
  }
  const evalBatches = [makeBatch(2, 8, MICRO_CONFIG.vocabSize, 99)];
  const seen: number[] = [];
  const summary = await trainLoop(backend, five(), {
    steps: 10,
    gradAccum: 2,
    evalBatches,
    evalEvery: 1,
    metricsFile: join(dir, 'm', 'metrics.jsonl'),
    drops: () => ({ samples: { bad_crc: 2 }, frames: { crc: 3 } }),
    onStep: (m) => seen.push(m.step),
  });
  t.equal(summary.steps, 2);
  t.equal(summary.microBatches, 5);
  t.equal(summary.dataEnded, true);
  t.same(seen, [1, 2]);
  t.ok(Number.isFinite(summary.evalFirst) && Number.isFinite(summary.evalLast));
  const lines = readFileSync(join(dir, 'm', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { drops: number; frameDrops: number; evalLoss?: number; tokens: number });
  t.equal(lines.length, 2);
  t.same([lines[0]?.drops, lines[0]?.frameDrops], [2, 3], 'drops so far, samples and frames');
  t.ok(lines.every((l) => l.evalLoss !== undefined), '--eval-every 1 evaluates after each step');
  t.equal(summary.tokens, lines.reduce((s, l) => s + l.tokens, 0));
  await t.rejects(trainLoop(backend, five(), { steps: 0 }), RangeError, 'steps must be ≥ 1');
});
