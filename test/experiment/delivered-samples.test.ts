/**
 * Delivered samples (`ndp pull` JSON lines) into an .ndp file: same samples, same order, the source's
 * tokenizer identity; the stream-order check; malformed input refused with the experiment's code.
 */
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openNdpFile } from '../../src/dataset/ndp-file.js';
import { SRC } from '../../src/protocol/registry.js';
import { StreamOrderCheck, writeDeliveredSamples } from '../../src/experiment/delivered-samples.js';

const SOURCE = { name: 'demo-train', tokenizer: { name: 'qwen3', hash: 'ab'.repeat(32), vocabSize: 151936 }, src: SRC.SYNTHETIC };

const line = (index: number, epoch: number, position: number, tokens: number[], mask: number[]): string =>
  JSON.stringify({ index, src: 'SYNTHETIC', dataset: 'demo-train', epoch, position, tokens, loss_mask: mask });

t.test('samples keep their order, tokens, loss masks and the tokenizer identity', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ndp-delivered-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const jsonl = join(dir, 'delivered.jsonl');
  // Arrival order is the stream's order, not the dataset's: index 7 first.
  await writeFile(jsonl, [line(7, 0, 0, [5, 6, 7], [0, 1, 1]), line(2, 0, 2, [9], [1]), ''].join('\n'));
  const summary = await writeDeliveredSamples(jsonl, join(dir, 'delivered.ndp'), SOURCE, new StreamOrderCheck());
  t.same(summary, { samples: 2, tokens: 4, orderMismatches: 0, orderChecked: 2 });
  const file = await openNdpFile(join(dir, 'delivered.ndp'));
  t.teardown(() => file.close());
  t.equal(file.sampleCount, 2);
  t.same(file.tokenizer, SOURCE.tokenizer, 'the trainer checks the vocabulary against it');
  t.equal(file.src, SRC.SYNTHETIC);
  const first = await file.read(0);
  t.same([...first.tokens], [5, 6, 7]);
  t.same([...first.lossMask], [0, 1, 1]);
  t.same([...(await file.read(1)).tokens], [9]);
});

t.test('the order check: one stream position, one dataset sample, across runs', async (t) => {
  const order = new StreamOrderCheck();
  t.ok(order.observe(0, 0, 7), 'first sight defines the position');
  t.ok(order.observe(0, 0, 7), 'the same sample again agrees');
  t.notOk(order.observe(0, 0, 8), 'another sample at that position disagrees');
  t.ok(order.observe(1, 0, 8), 'epochs are separate positions');
  const dir = await mkdtemp(join(tmpdir(), 'ndp-delivered-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const jsonl = join(dir, 'run.jsonl');
  await writeFile(jsonl, [line(7, 0, 0, [1], [1]), line(3, 0, 1, [2], [1])].join('\n'));
  const s = await writeDeliveredSamples(jsonl, join(dir, 'run.ndp'), SOURCE, order);
  t.equal(s.orderMismatches, 0, 'position 0 held 7 before too');
  const shifted = join(dir, 'shifted.jsonl');
  await writeFile(shifted, [line(3, 0, 0, [2], [1]), line(3, 0, 1, [2], [1])].join('\n'));
  t.equal((await writeDeliveredSamples(shifted, join(dir, 'shifted.ndp'), SOURCE, order)).orderMismatches, 1, 'a run with another order is caught');
});

t.test('malformed input is refused with the experiment code, and no half file is kept', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ndp-delivered-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const [name, text] of [
    ['not-json', 'hello'],
    ['mask-length', line(1, 0, 0, [1, 2], [1])],
    ['no-tokens', JSON.stringify({ index: 1, epoch: 0, position: 0 })],
    ['no-position', JSON.stringify({ index: 1, epoch: 0, tokens: [1], loss_mask: [1] })],
  ] as const) {
    const jsonl = join(dir, `${name}.jsonl`);
    await writeFile(jsonl, `${line(0, 0, 0, [1], [1])}\n${text}\n`);
    await t.rejects(writeDeliveredSamples(jsonl, join(dir, `${name}.ndp`), SOURCE, new StreamOrderCheck()), { code: 'NDP_ERR_EXPERIMENT_RUN_FAILED', message: /:2:/ }, name);
    await t.rejects(openNdpFile(join(dir, `${name}.ndp`)), `${name}: no usable file left`);
  }
});
