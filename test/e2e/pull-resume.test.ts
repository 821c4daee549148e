/**
 * Resume: a server killed mid-epoch (SIGKILL, no goodbye) and restarted on the same ports; the
 * client reconnects with backoff and continues from its cursor: every sample exactly once overall.
 * And `ndp pull` fails clearly when the server is unreachable, refuses, or the stream ends early.
 */
import t from 'tap';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { connect, type ClientStatus } from '../../client/client.js';
import { freePorts, runCli, startServer, tempDir, writeDataset } from '../client/fixtures.js';

const COUNT = 150;

for (const kind of ['udp', 'ws'] as const) {
  t.test(`${kind}: server killed mid-epoch and restarted; resumed from the cursor, every sample once`, async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'data.ndp');
    const known = await writeDataset(file, 'data', COUNT);
    const ports = await freePorts();
    let server = await startServer(t, [file], [], ports);
    const url = kind === 'udp' ? `udp://127.0.0.1:${ports.udp}` : `ws://127.0.0.1:${ports.ws}`;
    // A small window and buffer keep the server from sending the whole epoch before the kill.
    const client = await connect(url, { params: { window: 16, seed: 4 }, maxBufferedSamples: 4, reconnect: { baseDelayMs: 100, maxAttempts: 20 } });
    const events: ClientStatus[] = [];
    client.on('status', (s: ClientStatus) => events.push(s));
    const counts = new Map<number, number>();
    let wrong = 0;
    let n = 0;
    for await (const d of client.samples()) {
      counts.set(d.sample.index, (counts.get(d.sample.index) ?? 0) + 1);
      if (Array.from(d.sample.tokens).join() !== known[d.sample.index]!.tokens.join()) wrong++;
      if (++n === 40) {
        await server.kill('SIGKILL');
        await sleep(300);
        server = await startServer(t, [file], [], ports);
      }
      if (n % 10 === 0) await sleep(5);
    }
    t.equal(counts.size, COUNT, 'every sample delivered');
    t.ok([...counts.values()].every((c) => c === 1), 'none twice');
    t.equal(wrong, 0);
    t.ok(events.some((e) => e.type === 'disconnected'), 'a disconnect was seen');
    t.equal(events.filter((e) => e.type === 'resumed').length, client.stats.reconnects);
    t.ok(client.stats.reconnects >= 1, `${client.stats.reconnects} reconnect(s) after ${events.filter((e) => e.type === 'reconnecting').length} attempt(s)`);
    t.equal(client.accounting.imbalance(), undefined);
    await client.close();
  });
}

t.test('ndp pull: unreachable, refused, ended early → exit 1 with the code', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  await writeDataset(file, 'data', 400);
  const ports = await freePorts();
  const unreachable = await runCli(['pull', '--server', `ws://127.0.0.1:${ports.ws}`, '--out', join(dir, 'a.jsonl')]);
  t.equal(unreachable.code, 1);
  t.match(unreachable.stderr, /NDP_ERR_UNREACHABLE/);
  const noHttp = await runCli(['pull', '--server', `http://127.0.0.1:${ports.http}`, '--out', join(dir, 'a.jsonl')]);
  t.equal(noHttp.code, 1);
  t.match(noHttp.stderr, /NDP_ERR_UNREACHABLE/);
  const server = await startServer(t, [file], ['--token', 'sesame'], ports);
  const refused = await runCli(['pull', '--server', `udp://127.0.0.1:${ports.udp}`, '--token', 'wrong', '--out', join(dir, 'a.jsonl')]);
  t.equal(refused.code, 1);
  t.match(refused.stderr, /NDP_ERR_REFUSED.*NDP_ERR_UNAUTHORIZED/);
  const badDataset = await runCli(['pull', '--server', `http://127.0.0.1:${ports.http}`, '--token', 'sesame', '--dataset', 'nope', '--out', join(dir, 'a.jsonl')]);
  t.equal(badDataset.code, 1);
  t.match(badDataset.stderr, /NDP_ERR_UNKNOWN_DATASET/);
  const usage = await runCli(['pull', '--server', 'ftp://x', '--out', join(dir, 'a.jsonl')]);
  t.equal(usage.code, 1);
  t.match(usage.stderr, /NDP_ERR_BAD_URL/);
  const ok = await runCli(['pull', '--server', `udp://127.0.0.1:${ports.udp}`, '--token', 'sesame', '--out', join(dir, 'ok.jsonl'), '--quiet']);
  t.equal(ok.code, 0, ok.stderr);
  const unwritable = await runCli(['pull', '--server', `udp://127.0.0.1:${ports.udp}`, '--token', 'sesame', '--out', join(dir, 'no-such-dir', 'a.jsonl'), '--quiet']);
  t.equal(unwritable.code, 1, 'an unwritable --out is an error, not a crash');
  t.match(unwritable.stderr, /^ndp pull: cannot write --out: ENOENT/);
  t.notMatch(unwritable.stderr, /Unhandled 'error' event/);
  // Ended early: the server goes away for good mid-stream (paced to ~2 s so the kill lands inside it).
  const partial = join(dir, 'b.jsonl');
  const pull = runCli(['pull', '--server', `udp://127.0.0.1:${ports.udp}`, '--token', 'sesame', '--rate', '400000', '--reconnect-attempts', '2', '--out', partial]);
  while (!existsSync(partial) || statSync(partial).size === 0) await sleep(20);
  await server.kill('SIGKILL');
  const early = await pull;
  t.equal(early.code, 1, early.stderr);
  t.match(early.stderr, /NDP_ERR_STREAM_ENDED_EARLY/);
  const lines = readFileSync(partial, 'utf8').trim().split('\n').length;
  t.ok(lines > 0 && lines < 400, `${lines} samples written before the end`);
});
