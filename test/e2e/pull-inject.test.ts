/**
 * Injected faults (server --inject-drop/--inject-corrupt): the client's accounting adds up exactly and
 * matches what the server says it injected; `repair` still delivers the dataset exactly; two ranks
 * with unequal loss yield the same number of batches.
 */
import t from 'tap';
import { join } from 'node:path';
import { connect } from '../../client/client.js';
import { HttpApi } from '../../client/http-api.js';
import { startServer, tempDir, writeDataset } from '../client/fixtures.js';

const COUNT = 200;
const INJECT = ['--inject-drop', '0.05', '--inject-corrupt', '0.05', '--inject-seed', '3'];

function injected(metrics: string, kind: string): number {
  const m = new RegExp(`^ndp_injected_total\\{kind="${kind}"\\} (\\d+)`, 'm').exec(metrics);
  return m === null ? 0 : Number(m[1]);
}

t.test('repair with injected drops and corruption: exact dataset, counts match the server', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  const known = await writeDataset(file, 'data', COUNT);
  const server = await startServer(t, [file], INJECT);
  let corruptSeen = 0;
  for (const url of [`udp://127.0.0.1:${server.udp}`, `ws://127.0.0.1:${server.ws}`]) {
    await t.test(url.split(':')[0]!, async (t) => {
      const client = await connect(url);
      const seen = new Map<number, number>();
      let wrong = 0;
      for await (const d of client.samples()) {
        seen.set(d.sample.index, (seen.get(d.sample.index) ?? 0) + 1);
        if (Array.from(d.sample.tokens).join() !== known[d.sample.index]!.tokens.join()) wrong++;
      }
      t.equal(seen.size, COUNT, 'every sample delivered');
      t.ok([...seen.values()].every((n) => n === 1), 'none twice');
      t.equal(wrong, 0);
      const s = client.stats;
      t.equal(client.accounting.imbalance(), undefined);
      const inj = s.serverTotals;
      t.ok((inj.injectedCorrupt ?? 0) > 0 && (inj.injectedDrop ?? 0) > 0, `server injected ${inj.injectedDrop} drops, ${inj.injectedCorrupt} corruptions`);
      t.equal(s.frames.dropped.crc, inj.injectedCorrupt, 'every corrupted frame counted crc');
      t.equal(s.frames.missing, (inj.injectedDrop ?? 0) + (inj.injectedCorrupt ?? 0), 'missing seqs = injected drops + corruptions');
      t.equal(s.frames.repaired, s.frames.missing, 'all repaired');
      t.equal(s.samples.delivered, COUNT);
      corruptSeen += s.frames.dropped.crc;
      await client.close();
    });
  }
  const metrics = await new HttpApi(`http://127.0.0.1:${server.http}`).metrics();
  t.equal(injected(metrics, 'corrupt'), corruptSeen, "the server's /metrics agrees with the clients' crc drops");
});

t.test('lossy with injected faults: delivered + dropped = samplesTotal, reasons from the wire', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  const known = await writeDataset(file, 'data', COUNT);
  const server = await startServer(t, [file], INJECT);
  const client = await connect(`ws://127.0.0.1:${server.ws}`, { params: { loss: 'lossy' } });
  let wrong = 0;
  for await (const d of client.samples()) if (Array.from(d.sample.tokens).join() !== known[d.sample.index]!.tokens.join()) wrong++;
  t.equal(wrong, 0, 'what is delivered is intact');
  const s = client.stats;
  t.equal(client.accounting.imbalance(), undefined, 'ledgers balance');
  const dropped = Object.values(s.samples.dropped).reduce((a, b) => a + b, 0);
  t.equal(s.samples.delivered + dropped, COUNT);
  t.ok(s.samples.dropped.crc > 0 && s.samples.dropped.lost > 0, `dropped: crc ${s.samples.dropped.crc}, lost ${s.samples.dropped.lost}`);
  t.equal(s.frames.dropped.crc, s.serverTotals.injectedCorrupt);
  t.equal(s.frames.missing, (s.serverTotals.injectedDrop ?? 0) + (s.serverTotals.injectedCorrupt ?? 0));
  await client.close();
});

t.test('two ranks with unequal loss yield equal batch counts', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  await writeDataset(file, 'data', 101, 200);
  const server = await startServer(t, [file]);
  const run = async (rank: number, crcDropRate: number) => {
    const client = await connect(`udp://127.0.0.1:${server.udp}`, { params: { rank, world: 2, epochs: 2, loss: 'lossy' }, crcDropRate, crcDropSeed: rank });
    const batches = [];
    for await (const b of client.batches({ batchSize: 4 })) batches.push(b);
    const stats = client.stats;
    await client.close();
    return { batches, stats, samplesPerEpoch: client.accept.samplesPerEpoch };
  };
  const [a, b] = await Promise.all([run(0, 0.3), run(1, 0)]);
  t.equal(a.samplesPerEpoch, 51, 'ceil(101 / 2) per rank');
  t.ok(a.stats.samples.dropped.augment > 0, `rank 0 lost ${a.stats.samples.dropped.augment} samples to CRC-Drop`);
  t.equal(b.stats.samples.delivered, 102, 'rank 1 lost nothing');
  t.equal(a.batches.length, 2 * 13);
  t.equal(b.batches.length, a.batches.length, 'same number of steps');
  t.ok(a.batches.every((x) => x.sampleIndices.length === 4) && b.batches.every((x) => x.sampleIndices.length === 4), 'every batch full');
  t.ok(a.stats.equalSteps.recycledSamples > b.stats.equalSteps.recycledSamples, 'the lossy rank recycles more');
});

t.test('CRC-Drop augmentation in a repair session: dropped frames are NACKed and repaired, the dataset arrives exactly', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  const known = await writeDataset(file, 'data', 120);
  const server = await startServer(t, [file]);
  const client = await connect(`udp://127.0.0.1:${server.udp}`, { crcDropRate: 0.2, crcDropSeed: 11 });
  const seen = new Set<number>();
  let wrong = 0;
  for await (const d of client.samples()) {
    seen.add(d.sample.index);
    if (Array.from(d.sample.tokens).join() !== known[d.sample.index]!.tokens.join()) wrong++;
  }
  const s = client.stats;
  t.equal(seen.size, 120);
  t.equal(wrong, 0);
  t.ok(s.frames.dropped.augment > 0, `${s.frames.dropped.augment} good frames dropped by augmentation, all repaired`);
  t.equal(s.samples.delivered, 120);
  t.equal(client.accounting.imbalance(), undefined);
  await client.close();
});
