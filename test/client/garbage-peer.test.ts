/**
 * A client fed garbage by a peer of our own (a raw dgram socket, a ws server) that otherwise speaks
 * the handshake: it must not crash, must count every bad input under its reason, and must still
 * deliver the good samples exactly.
 */
import t from 'tap';
import dgram from 'node:dgram';
import { WebSocketServer } from 'ws';
import { connect } from '../../client/client.js';
import { decodeControl, encodeControlFrame, type ControlMessage } from '../../src/protocol/control.js';
import { decodeFrame, encodeFrame } from '../../src/protocol/frame.js';
import { CONTROL, DST, SRC, TYP } from '../../src/protocol/registry.js';
import { encodeSampleBody } from '../../src/protocol/sample-body.js';
import { segmentSample } from '../../src/protocol/segmenter.js';

const SESSION = 77;
const DATAGRAM = 200;
const SAMPLES = [
  { tokens: Int32Array.from([1, 2, 3]), lossMask: Uint8Array.from([0, 1, 1]) },
  { tokens: Int32Array.from({ length: 100 }, (_, i) => i * 7), lossMask: new Uint8Array(100).fill(1) },
  { tokens: Int32Array.from([42]), lossMask: Uint8Array.from([1]) },
];

function acceptMessage(nonce: number): ControlMessage {
  return {
    t: CONTROL.ACCEPT,
    nonce,
    session: SESSION,
    params: { rank: 0, world: 1, epochs: 1, seed: 0, shuffle: false, remainder: 'pad', cursor: { epoch: 0, position: 0 }, datagram: DATAGRAM, rate: 1e6, window: 64, loss: 'repair', dst: DST.EMBEDDING, sources: [{ dataset: 'junk', src: SRC.CODE_REPO }], inject: { drop: 0, corrupt: 0, seed: 0 } },
    samplesPerEpoch: SAMPLES.length,
    samplesTotal: SAMPLES.length,
    sources: [{ dataset: 'junk', src: SRC.CODE_REPO, weight: 1, samples: 3, shard: 3, samplesPerEpoch: 3, share: 1 }],
    tokenizer: { name: 'none', hash: '', vocabSize: 1000 },
    heartbeatMs: 1000,
    idleTimeoutMs: 15000,
  } as ControlMessage;
}

/** The good frames of the stream, and the seq after them. */
function streamFrames(): { frames: Uint8Array[]; nextSeq: number } {
  const frames: Uint8Array[] = [];
  let seq = 0;
  SAMPLES.forEach((s, position) => {
    const out = segmentSample({ body: encodeSampleBody(s), src: SRC.CODE_REPO, dst: DST.EMBEDDING, session: SESSION, seq, epoch: 0, position, sample: 10 + position, source: 0 }, { datagram: DATAGRAM });
    frames.push(...out.frames.map((f) => Uint8Array.from(f)));
    seq = out.nextSeq;
  });
  return { frames, nextSeq: seq };
}

function segmentFor(session: number, seq: number, dst = DST.EMBEDDING): Uint8Array {
  return segmentSample({ body: encodeSampleBody(SAMPLES[0]!), src: SRC.CODE_REPO, dst, session, seq, epoch: 0, position: 0, sample: 10, source: 0 }, { datagram: DATAGRAM }).frames[0]!.slice();
}

/** Each entry: one datagram/message of junk and the reason the client must count it under. */
function junk(good: Uint8Array): Array<[Uint8Array, string]> {
  const flipped = good.slice();
  flipped[20]! ^= 0x10;
  return [
    [Uint8Array.from({ length: 100 }, (_, i) => (i * 37 + 1) & 0xff), 'malformed'],
    [good.subarray(0, 10), 'malformed'],
    [new Uint8Array(0), 'malformed'],
    [flipped, 'crc'],
    [segmentFor(999, 0, 0x77), 'unrouted'],
    [encodeFrame({ src: SRC.CONTROL, dst: DST.CONTROL, typ: TYP.CONTROL, payload: Uint8Array.from([0xc1, 0x00]) }), 'malformed'],
    [segmentFor(999, 0), 'foreign'],
    [segmentFor(SESSION, 10_000_000), 'out_of_window'],
    [encodeFrame({ src: SRC.CODE_REPO, dst: DST.EMBEDDING, typ: TYP.TOKEN_IDS, payload: new Uint8Array(8) }), 'unrouted'],
  ];
}

function expectedDrops(list: Array<[Uint8Array, string]>): Record<string, number> {
  const out: Record<string, number> = { duplicate: 1 };
  for (const [, reason] of list) out[reason] = (out[reason] ?? 0) + 1;
  return out;
}

t.test('UDP: junk datagrams around a good stream are counted, the stream is delivered', async (t) => {
  const peer = dgram.createSocket('udp4');
  await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
  t.teardown(() => peer.close());
  const { frames, nextSeq } = streamFrames();
  const list = junk(frames[0]!);
  peer.on('message', (msg, rinfo) => {
    const send = (b: Uint8Array) => peer.send(b, rinfo.port, rinfo.address);
    let m: ControlMessage;
    try {
      m = decodeControl(decodeFrame(msg).payload);
    } catch {
      return;
    }
    if (m.t === CONTROL.HELLO) {
      send(Uint8Array.from([1, 2, 3])); // junk before the cookie
      send(encodeControlFrame({ t: CONTROL.COOKIE, cookie: new Uint8Array(8), lifetimeMs: 30000 } as ControlMessage));
    } else if (m.t === CONTROL.SUBSCRIBE) {
      send(encodeControlFrame(acceptMessage((m as { nonce: number }).nonce)));
      for (const [bytes] of list) send(bytes);
      for (const f of frames) send(f);
      send(frames[0]!); // a duplicate
      send(encodeControlFrame({ t: CONTROL.END, session: SESSION, nextSeq, cursor: { epoch: 1, position: 0 }, counters: { frames: nextSeq } } as ControlMessage));
    }
  });
  const client = await connect(`udp://127.0.0.1:${peer.address().port}`);
  const got = [];
  for await (const d of client.samples()) got.push(d);
  t.same(got.map((d) => [...d.sample.tokens]), SAMPLES.map((s) => [...s.tokens]));
  t.same(got.map((d) => d.sample.index), [10, 11, 12]);
  t.same([...got[0]!.sample.lossMask], [0, 1, 1]);
  const stats = client.stats;
  const drops = Object.fromEntries(Object.entries(stats.frames.dropped).filter(([, n]) => n > 0));
  t.same(drops, { ...expectedDrops(list), malformed: expectedDrops(list).malformed! + 1 }, 'each junk datagram counted under its reason (+1 junk before the cookie)');
  t.equal(client.accounting.imbalance(), undefined, 'both ledgers balance');
  t.equal(stats.samples.delivered, 3);
  t.equal(stats.frames.used, frames.length);
  await client.close();
});

t.test('UDP: a peer that answers only junk is unreachable, not a crash', async (t) => {
  const peer = dgram.createSocket('udp4');
  await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
  t.teardown(() => peer.close());
  peer.on('message', (_msg, rinfo) => peer.send(Uint8Array.from([0xaa, 1, 2, 3, 0, 50, 9]), rinfo.port, rinfo.address));
  await t.rejects(connect(`udp://127.0.0.1:${peer.address().port}`, { handshakeTries: 3, handshakeRetryMs: 20 }), { code: 'NDP_ERR_UNREACHABLE' });
});

t.test('WebSocket: junk frames inside messages are counted, good frames in the same message used', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: (p) => (p.has('ndp.v1') ? 'ndp.v1' : false) });
  await new Promise<void>((r) => wss.once('listening', r));
  t.teardown(() => new Promise<void>((r) => wss.close(() => r())));
  const { frames, nextSeq } = streamFrames();
  const list = junk(frames[0]!).filter(([b]) => b.length > 0 && b[0] === 0xaa && b.length > 10);
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const m = decodeControl(decodeFrame(new Uint8Array(data as Buffer)).payload);
      if (m.t !== CONTROL.SUBSCRIBE) return;
      // ACCEPT and the first junk frame share one message; good frames follow junk in the same message.
      ws.send(Buffer.concat([encodeControlFrame(acceptMessage((m as { nonce: number }).nonce)), ...list.map(([b]) => b)]));
      ws.send(Buffer.concat(frames.slice(0, 2)));
      ws.send(Buffer.concat([...frames.slice(2), frames[0]!]));
      ws.send(Buffer.concat([encodeControlFrame({ t: CONTROL.END, session: SESSION, nextSeq, cursor: { epoch: 1, position: 0 }, counters: {} } as ControlMessage), Uint8Array.from([0x55, 0x55])]));
    });
  });
  const client = await connect(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`);
  const got = [];
  for await (const d of client.samples()) got.push(d);
  t.same(got.map((d) => [...d.sample.tokens]), SAMPLES.map((s) => [...s.tokens]));
  const drops = Object.fromEntries(Object.entries(client.stats.frames.dropped).filter(([, n]) => n > 0));
  const expected = expectedDrops(list);
  expected.malformed = (expected.malformed ?? 0) + 1; // the torn tail after END
  t.same(drops, expected);
  t.equal(client.accounting.imbalance(), undefined);
  await client.close();
});

t.test('a server that goes silent after ACCEPT: the session ends "silent", resumes are tried, then the stream fails', async (t) => {
  const peer = dgram.createSocket('udp4');
  await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
  t.teardown(() => peer.close());
  peer.on('message', (msg, rinfo) => {
    const m = decodeControl(decodeFrame(msg).payload);
    if (m.t === CONTROL.HELLO) peer.send(encodeControlFrame({ t: CONTROL.COOKIE, cookie: new Uint8Array(8), lifetimeMs: 30000 } as ControlMessage), rinfo.port, rinfo.address);
    if (m.t === CONTROL.SUBSCRIBE) peer.send(encodeControlFrame(acceptMessage((m as { nonce: number }).nonce)), rinfo.port, rinfo.address);
  });
  const client = await connect(`udp://127.0.0.1:${peer.address().port}`, { deadAfterMs: 150, reconnect: { maxAttempts: 2, baseDelayMs: 10 } });
  const events: string[] = [];
  client.on('status', (s: { type: string }) => events.push(s.type));
  await t.rejects(
    (async () => {
      for await (const d of client.samples()) void d;
    })(),
    { code: 'NDP_ERR_STREAM_ENDED_EARLY' },
  );
  t.same(events, ['disconnected', 'reconnecting', 'resumed', 'disconnected', 'reconnecting', 'resumed', 'disconnected', 'ended'], 'attempts without progress count against maxAttempts');
  await client.close();
});

t.test('MessageBuffer keeps at most its limit of unread messages', async (t) => {
  const { MessageBuffer } = await import('../../client/transport.js');
  const b = new MessageBuffer(2);
  b.push(Uint8Array.of(1));
  b.push(Uint8Array.of(2));
  b.push(Uint8Array.of(3));
  t.equal(b.overflowed, 1);
  const got: number[] = [];
  b.setHandler((m) => got.push(m[0]!));
  t.same(got, [2, 3], 'the oldest was discarded');
});
t.test('a bad client option is refused before anything is sent', async (t) => {
  const peer = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => peer.bind(0, '127.0.0.1', resolve));
  t.teardown(() => peer.close());
  let received = 0;
  peer.on('message', () => received++);
  const url = `udp://127.0.0.1:${peer.address().port}`;
  await t.rejects(connect(url, { crcDropRate: 2, handshakeTries: 1 }), RangeError);
  await t.rejects(connect(url, { nackIntervalMs: 0, handshakeTries: 1 }), RangeError);
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.equal(received, 0, 'no HELLO went out');
});
