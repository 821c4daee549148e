/**
 * A full epoch with `repair` over real sockets equals the dataset exactly: every sample once, same
 * tokens and loss mask — over UDP and WebSocket (in-band), and through the HTTP API with `ndp pull`.
 */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../../client/client.js';
import { IGNORE_LABEL } from '../../client/batcher.js';
import { runCli, startServer, tempDir, writeDataset, type KnownSample } from '../client/fixtures.js';

const COUNT = 240;

function checkExact(t: Test, known: readonly KnownSample[], got: ReadonlyArray<{ index: number; tokens: ArrayLike<number>; lossMask: ArrayLike<number> }>): void {
  t.equal(got.length, known.length, 'one delivery per sample');
  t.same([...new Set(got.map((g) => g.index))].sort((a, b) => a - b), known.map((_, i) => i), 'every index exactly once');
  const wrong = got.filter((g) => Array.from(g.tokens).join() !== known[g.index]!.tokens.join() || Array.from(g.lossMask).join() !== known[g.index]!.lossMask.join());
  t.equal(wrong.length, 0, 'tokens and loss masks equal the dataset');
}

t.test('repair over UDP and WebSocket: the stream equals the dataset', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  const known = await writeDataset(file, 'data', COUNT);
  const server = await startServer(t, [file]);
  for (const url of [`udp://127.0.0.1:${server.udp}`, `ws://127.0.0.1:${server.ws}`]) {
    await t.test(url.split(':')[0]!, async (t) => {
      const client = await connect(url, { params: { seed: 9 } });
      const got = [];
      for await (const d of client.samples()) got.push({ index: d.sample.index, tokens: d.sample.tokens, lossMask: d.sample.lossMask });
      checkExact(t, known, got);
      t.equal(client.accounting.imbalance(), undefined, 'frame and sample ledgers balance');
      const s = client.stats;
      t.equal(s.samples.expected, COUNT);
      t.equal(s.frames.missing, 0, 'nothing injected, nothing missing');
      t.same(s.cursor, { epoch: 1, position: 0 }, 'cursor at the end of the stream');
      await client.close();
    });
  }
});

t.test('batches over WebSocket: equal steps, labels -100 where masked, every sample in a batch once', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  const known = await writeDataset(file, 'data', 50, 300);
  const server = await startServer(t, [file]);
  const client = await connect(`ws://127.0.0.1:${server.ws}`, { params: { epochs: 2 } });
  const batches = [];
  for await (const b of client.batches({ batchSize: 8, seqLen: 256, prefetch: 2 })) batches.push(b);
  t.equal(batches.length, 2 * Math.ceil(50 / 8), 'ceil(samplesPerEpoch / batchSize) per epoch');
  t.same(batches.map((b) => b.step), [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6]);
  for (const epoch of [0, 1]) {
    const inEpoch = batches.filter((b) => b.epoch === epoch);
    const real = inEpoch.flatMap((b) => b.sampleIndices.slice(0, b.sampleIndices.length - b.recycledSamples));
    t.same([...real].sort((a, b) => a - b), known.map((_, i) => i), `epoch ${epoch}: each sample once`);
    t.equal(inEpoch.reduce((n, b) => n + b.recycledSamples, 0), 6, 'the last batch is filled with 6 recycled samples');
  }
  const b = batches[0]!;
  let checked = 0;
  b.sampleIndices.forEach((index, row) => {
    const k = known[index]!;
    for (let i = 0; i < Math.min(k.tokens.length, 256); i++) {
      const at = row * 256 + i;
      if (b.inputIds[at] !== k.tokens[i] || b.labels[at] !== (k.lossMask[i] ? k.tokens[i] : IGNORE_LABEL)) t.fail(`row ${row} token ${i}`);
      checked++;
    }
  });
  t.ok(checked > 0, `${checked} positions match input ids and labels`);
  t.ok(client.stats.stallPercent >= 0 && client.stats.stallPercent <= 100);
  await client.close();
});

t.test('ndp pull through the HTTP API (--transport ws): JSON lines equal the dataset, stats file written', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  const known = await writeDataset(file, 'data', 80);
  const server = await startServer(t, [file]);
  const out = join(dir, 'samples.jsonl');
  const statsPath = join(dir, 'stats.json');
  const run = await runCli(['pull', '--server', `http://127.0.0.1:${server.http}`, '--transport', 'ws', '--dataset', 'data', '--out', out, '--stats', statsPath, '--quiet']);
  t.equal(run.code, 0, run.stderr);
  const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { index: number; src: string; tokens: number[]; loss_mask: number[] });
  checkExact(t, known, lines.map((l) => ({ index: l.index, tokens: l.tokens, lossMask: l.loss_mask })));
  t.equal(lines[0]!.src, 'CODE_REPO');
  const stats = JSON.parse(readFileSync(statsPath, 'utf8')) as { samples: { delivered: number }; transport: string };
  t.equal(stats.samples.delivered, 80);
  t.equal(stats.transport, 'ws');
});
