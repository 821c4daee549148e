/**
 * Sessions of a real `ndp serve` process (NDP.md §7.7, §7.8, §7.12): shards of a world, weighted
 * mixing, resume from a cursor, reproducible fault injection, SIGTERM.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { DST, SRC } from '../../src/protocol/registry.js';
import { SessionPlan } from '../../server/session-plan.js';
import { RawUdpClient, RawWsClient, http, makeDataset, runToEnd, startServer, tempDir, type StreamCollector } from '../server/helpers.js';

t.test('two ranks of a world of two: disjoint, cover everything, equal counts', async (t) => {
  const dir = await tempDir(t);
  // 101 is odd: with remainder=pad one rank repeats exactly one sample; with drop one is left out.
  const file = await makeDataset(dir, 'odd', 101);
  const server = await startServer(t, [file]);
  for (const remainder of ['pad', 'drop'] as const) {
    const ranks: StreamCollector[] = [];
    for (const rank of [0, 1]) {
      const c = await RawWsClient.connect(server.ready.ws!);
      await c.open({ rank, world: 2, seed: 3, remainder, epochs: 2 });
      await runToEnd(c.collector);
      ranks.push(c.collector);
      c.close();
    }
    const perEpoch = (rank: number, epoch: number) => ranks[rank]!.ordered().filter((s) => s.epoch === epoch).map((s) => s.sample);
    for (const epoch of [0, 1]) {
      const a = perEpoch(0, epoch);
      const b = perEpoch(1, epoch);
      t.equal(a.length, b.length, `${remainder} epoch ${epoch}: equal counts (${a.length})`);
      t.equal(a.length, remainder === 'pad' ? 51 : 50);
      t.equal(ranks[0]!.accept!.samplesPerEpoch, a.length, 'ACCEPT samplesPerEpoch is what arrives');
      const union = new Set([...a, ...b]);
      const overlap = a.filter((s) => b.includes(s));
      if (remainder === 'pad') {
        t.equal(union.size, 101, 'pad: together they cover every sample');
        t.equal(overlap.length + (a.length - new Set(a).size) + (b.length - new Set(b).size), 1, 'pad: exactly one wrapped-around repeat');
      } else {
        t.equal(overlap.length, 0, 'drop: disjoint');
        t.equal(union.size, 100, 'drop: one sample left out of this pass');
      }
    }
    t.notSame(perEpoch(0, 0), perEpoch(0, 1), 'each epoch is reshuffled');
  }
  t.equal(await server.stop(), 0);
});

t.test('weighted mixing: deterministic interleave, quotas reported and delivered', async (t) => {
  const dir = await tempDir(t);
  const a = await makeDataset(dir, 'code', 60, SRC.CODE_REPO, 1_000_000);
  const b = await makeDataset(dir, 'chat', 20, SRC.CHAT, 2_000_000);
  const server = await startServer(t, [a, b]);
  const runs: StreamCollector[] = [];
  for (let i = 0; i < 2; i++) {
    const c = await RawWsClient.connect(server.ready.ws!);
    await c.open({ sources: [{ dataset: 'code', weight: 1 }, { src: SRC.CHAT, weight: 3 }], seed: 11, epochs: 2 });
    await runToEnd(c.collector);
    runs.push(c.collector);
    c.close();
  }
  const accept = runs[0]!.accept! as { samplesPerEpoch: number; sources: Array<{ dataset: string; samplesPerEpoch: number; share: number }> };
  t.equal(accept.samplesPerEpoch, 80);
  t.same(accept.sources.map((s) => [s.dataset, s.samplesPerEpoch, s.share]), [['code', 20, 0.25], ['chat', 60, 0.75]], 'quotas follow the weights');
  const got = runs[0]!.ordered();
  t.equal(got.filter((s) => s.source === 1).length, 120, 'chat delivered 60 per epoch (repeats its 20 samples)');
  t.ok(got.every((s) => s.src === (s.source === 0 ? SRC.CODE_REPO : SRC.CHAT)), 'frames carry their dataset SRC');
  // Evenly spread: in any 8 consecutive positions the chat source has 5..7.
  const sources = got.filter((s) => s.epoch === 0).map((s) => s.source);
  for (let i = 0; i + 8 <= sources.length; i++) {
    const n = sources.slice(i, i + 8).filter((x) => x === 1).length;
    if (n < 5 || n > 7) t.fail(`window at ${i} has ${n} chat samples`);
  }
  t.same(runs[1]!.ordered().map((s) => [s.source, s.sample]), got.map((s) => [s.source, s.sample]), 'same parameters, same order');
  const plan = new SessionPlan([{ samples: 60, weight: 1 }, { samples: 20, weight: 3 }], { rank: 0, world: 1, seed: 11, shuffle: true, remainder: 'pad' });
  t.same(got.map((s) => [s.epoch, s.position, s.source, s.sample]), [...plan.iterate({ epoch: 0, position: 0 }, 2)].map((p) => [p.epoch, p.position, p.source, p.sample]), 'the order of NDP.md §7.8');
  t.equal(await server.stop(), 0);
});

t.test('resume from a cursor continues exactly', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 150);
  const server = await startServer(t, [file]);
  const params = { seed: 5, epochs: 2 };
  const full = new RawUdpClient(server.ready.udp!);
  await full.bind();
  await full.open(params);
  await runToEnd(full.collector);
  full.close();
  const whole = full.collector.ordered().map((s) => [s.epoch, s.position, s.sample]);
  t.equal(whole.length, 300);

  // First part: stop after some samples, delete the session, take the BYE cursor.
  const first = new RawUdpClient(server.ready.udp!, { window: 64 });
  await first.bind();
  await first.open({ ...params, rate: 100_000 });
  await first.collector.until(() => first.collector.samples.length >= 100, 20_000, '100 samples');
  const session = first.collector.session;
  const del = await http(server.baseUrl, 'DELETE', `/v1/sessions/${session}`);
  t.equal(del.status, 200);
  await first.collector.until(() => first.collector.bye !== undefined, 5000, 'BYE deleted');
  t.equal(first.collector.bye?.reason, 'deleted');
  t.equal(first.collector.bye?.code, 'NDP_ERR_SESSION_DELETED');
  const cursor = first.collector.bye!.cursor!;
  t.same(del.json.cursor, cursor, 'DELETE reply and BYE carry the same cursor');
  first.close();
  const before = first.collector.ordered().filter((s) => s.epoch < cursor.epoch || (s.epoch === cursor.epoch && s.position < cursor.position));
  t.same(before.map((s) => [s.epoch, s.position, s.sample]), whole.slice(0, before.length), 'everything before the cursor arrived, in order');

  const second = new RawUdpClient(server.ready.udp!);
  await second.bind();
  await second.open({ ...params, cursor });
  t.equal((second.collector.accept as { samplesTotal: number }).samplesTotal, 300 - before.length, 'samplesTotal counts from the cursor');
  await runToEnd(second.collector);
  second.close();
  const rest = second.collector.ordered().map((s) => [s.epoch, s.position, s.sample]);
  t.same([...before.map((s) => [s.epoch, s.position, s.sample]), ...rest], whole, 'first part + resumed part = the whole stream, nothing twice, nothing skipped');
  t.equal(await server.stop(), 0);
});

t.test('injected corruption and drops: reproducible from the seed, counted exactly, repaired in repair sessions', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 120);
  const server = await startServer(t, [file], ['--inject-corrupt', '0.05', '--inject-drop', '0.03', '--inject-seed', '42']);
  const lossyRuns: StreamCollector[] = [];
  for (let i = 0; i < 2; i++) {
    const c = await RawWsClient.connect(server.ready.ws!, { nack: false });
    await c.open({ loss: 'lossy', datagram: 300 });
    await runToEnd(c.collector);
    lossyRuns.push(c.collector);
    c.close();
  }
  const [r1, r2] = lossyRuns as [StreamCollector, StreamCollector];
  const missing = (c: StreamCollector) => {
    const out: number[] = [];
    for (let s = 0; s < c.end!.nextSeq; s++) if (!c.received.has(s)) out.push(s);
    return out;
  };
  t.ok(r1.end!.counters.injectedCorrupt > 0 && r1.end!.counters.injectedDrop > 0, 'faults were injected');
  t.equal(r1.dropped.bad_crc, r1.end!.counters.injectedCorrupt, 'every corruption fails the CRC-16 at the receiver');
  t.equal(r1.frames - r1.controls.length - (r1.dropped.bad_crc ?? 0), r1.end!.nextSeq - r1.end!.counters.injectedDrop - r1.end!.counters.injectedCorrupt, 'received good frames = sent - injected');
  t.same(r2.end!.counters, r1.end!.counters, 'same counts on a second run');
  t.same(missing(r2), missing(r1), 'same seqs missing on a second run');
  // Frames of two sessions differ in the session id (bytes 10..13) and so in the CRC: XOR the id
  // out, leave the CRC aside, and the corrupted frames are identical.
  const normalized = (c: StreamCollector) =>
    c.badCrcFrames.map((f) => {
      const copy = Buffer.from(f);
      copy.writeUInt32BE((copy.readUInt32BE(10) ^ c.session) >>> 0, 10);
      return copy.subarray(0, copy.length - 2).toString('hex');
    });
  t.same(normalized(r2), normalized(r1), 'byte-identical corrupted frames (session id aside)');

  const info = await http(server.baseUrl, 'GET', `/v1/sessions/${r1.session}`);
  t.same(info.json.injected, { drop: r1.end!.counters.injectedDrop, corrupt: r1.end!.counters.injectedCorrupt }, 'GET /v1/sessions/:id reports the injected counts');

  const repair = new RawUdpClient(server.ready.udp!);
  await repair.bind();
  await repair.open({ datagram: 300 });
  await runToEnd(repair.collector);
  repair.close();
  t.equal(repair.collector.samples.length, 120, 'repair: every sample delivered despite injection');
  t.ok(repair.collector.retransmitted.size >= repair.collector.end!.counters.injectedDrop + repair.collector.end!.counters.injectedCorrupt, 'every injected frame was retransmitted');
  const metrics = await http(server.baseUrl, 'GET', '/metrics');
  t.match(metrics.json, /ndp_injected_total\{kind="corrupt"\} \d+/);
  t.match(metrics.json, /ndp_retransmits_total \d+/);
  t.equal(await server.stop(), 0);
});

t.test('SIGTERM: BYE shutdown with a cursor to every client, exit 0', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 400);
  const server = await startServer(t, [file], ['--session-rate', '200000']);
  const udp = new RawUdpClient(server.ready.udp!);
  await udp.bind();
  await udp.open({});
  const ws = await RawWsClient.connect(server.ready.ws!);
  await ws.open({});
  await udp.collector.until(() => udp.collector.samples.length > 5, 10_000, 'UDP samples');
  await ws.collector.until(() => ws.collector.samples.length > 5, 10_000, 'WS samples');
  udp.collector.credit();
  ws.collector.credit();
  await new Promise((r) => setTimeout(r, 100));
  const code = await server.stop();
  t.equal(code, 0, 'exit status 0');
  await ws.closed;
  for (const [name, c] of [['udp', udp.collector], ['ws', ws.collector]] as const) {
    await c.until(() => c.bye !== undefined, 3000, `${name} BYE`);
    t.equal(c.bye?.reason, 'shutdown', `${name}: BYE shutdown`);
    t.equal(c.bye?.code, 'NDP_ERR_SHUTDOWN');
    t.ok(c.bye!.cursor!.position > 0 && c.bye!.cursor!.position <= c.samples.length, `${name}: cursor ${JSON.stringify(c.bye?.cursor)} within what arrived`);
  }
  t.equal(ws.closeCode, 1001, 'WebSocket closed with 1001 going away');
  udp.close();
  t.match(server.stdout.at(-1) ?? '', /"stopped":true/);
});

t.test('routing rules from flags and a routes file: set-dst, drop (GONE routed), count', async (t) => {
  const dir = await tempDir(t);
  const code = await makeDataset(dir, 'code', 30, SRC.CODE_REPO);
  const chat = await makeDataset(dir, 'chat', 10, SRC.CHAT, 5_000_000);
  const routes = `${dir}/routes.json`;
  await writeFile(routes, JSON.stringify([{ match: { src: 'CODE_REPO' }, action: 'count', name: 'code_frames' }]));
  const server = await startServer(t, [code, chat], ['--routes', routes, '--route', 'src=CODE_REPO,action=set-dst:LORA', '--route', 'src=CHAT,action=drop']);
  const c = await RawWsClient.connect(server.ready.ws!);
  await c.open({});
  await runToEnd(c.collector);
  c.close();
  t.equal(c.collector.samples.length, 30, 'only the code samples arrive');
  t.ok(c.collector.samples.every((s) => s.src === SRC.CODE_REPO && s.dst === DST.LORA), 'with DST rewritten to LORA (CRC still good)');
  const routedSeqs = c.collector.gone.filter((g) => g.reason === 'routed').reduce((n, g) => n + g.ranges.reduce((m, [a, b]) => m + b - a + 1, 0), 0);
  t.equal(routedSeqs, c.collector.end!.counters.routedDrop, 'every dropped frame announced by GONE routed');
  t.ok(routedSeqs >= 10, 'at least one frame per chat sample');
  const metrics = (await http(server.baseUrl, 'GET', '/metrics')).json as string;
  t.match(metrics, new RegExp(`ndp_routed_total\\{action="drop"\\} ${routedSeqs}`));
  t.match(metrics, /ndp_route_matches_total\{rule="code_frames"\} \d+/);
  t.equal(await server.stop(), 0);
});
