/**
 * The server's small parts at their limits: router rules (flags and JSON), retransmit buffer
 * eviction, fault injector counts, token bucket pacing, cookies, the 3× budget and the handshake
 * window, parameter resolution and clamps.
 */
import t from 'tap';
import { encodeFrame, decodeFrame } from '../../src/protocol/frame.js';
import { DST, SRC, TYP } from '../../src/protocol/registry.js';
import { AddressGuard } from '../../server/address-guard.js';
import { Catalog } from '../../server/catalog.js';
import { CookieJar } from '../../server/cookie.js';
import { FaultInjector } from '../../server/fault-injector.js';
import { DEFAULT_SERVER_OPTIONS } from '../../server/options.js';
import { resolveParams } from '../../server/params.js';
import { ROUTED, RetransmitBuffer } from '../../server/retransmit-buffer.js';
import { Router, parseRouteFlag, parseRoutesJson } from '../../server/router.js';
import { rewriteCodes, withRetransmitFlag } from '../../server/session.js';
import { TokenBucket } from '../../server/token-bucket.js';
import type { SampleSource } from '../../src/dataset/sample.js';

t.test('router: flags and JSON rules, in order, first deliver/drop wins', async (t) => {
  const rules = [
    parseRouteFlag('src=CODE_REPO,action=set-dst:LORA', 0),
    parseRouteFlag('src=CHAT,action=count:chats', 1),
    ...parseRoutesJson(JSON.stringify([{ match: { src: 'GRADIENT' }, action: 'drop' }, { match: { dst: 'LORA' }, action: 'capture' }])),
  ];
  const router = new Router(rules);
  t.match(router.route(SRC.CODE_REPO, DST.EMBEDDING, TYP.SEGMENT), { deliver: true, dst: DST.LORA, capture: true });
  t.match(router.route(SRC.CHAT, DST.EMBEDDING, TYP.SEGMENT, 3), { deliver: true, dst: DST.EMBEDDING, capture: false, counted: ['chats'] });
  t.equal(router.counts.get('chats'), 3, 'count rules count frames');
  t.match(router.route(SRC.GRADIENT, DST.EMBEDDING, TYP.SEGMENT), { deliver: false });
  t.match(new Router([parseRouteFlag('typ=SEGMENT,action=deliver', 0), parseRouteFlag('action=drop', 1)]).route(1, 1, TYP.SEGMENT), { deliver: true }, 'deliver stops the walk');
  for (const bad of ['src=NOPE,action=drop', 'action=explode', 'colour=red,action=drop', 'src']) t.throws(() => parseRouteFlag(bad, 0), { code: 'NDP_ERR_BAD_ROUTE' }, bad);
  t.throws(() => parseRoutesJson('{'), { code: 'NDP_ERR_BAD_ROUTE' });
  t.throws(() => parseRoutesJson('{}'), { code: 'NDP_ERR_BAD_ROUTE' });
});

t.test('retransmit buffer: bounded in bytes, evicts oldest, knows evicted from acknowledged', async (t) => {
  const buffer = new RetransmitBuffer(100);
  for (let seq = 0; seq < 3; seq++) buffer.hold(seq, new Uint8Array(30));
  t.equal(buffer.bytes, 90);
  buffer.hold(3, ROUTED);
  buffer.hold(4, new Uint8Array(30));
  t.equal(buffer.bytes, 90, 'never above the limit: the oldest went');
  t.equal(buffer.evictions, 1);
  t.equal(buffer.lookup(0), 'evicted');
  t.type(buffer.lookup(1), Uint8Array);
  t.equal(buffer.lookup(3), ROUTED);
  buffer.release(4);
  t.equal(buffer.lookup(0), undefined, 'below ack: acknowledged, not evicted');
  t.equal(buffer.lookup(3), undefined);
  t.type(buffer.lookup(4), Uint8Array);
  t.equal(buffer.bytes, 30);
});

t.test('retransmit buffer: stays exact through thousands of evictions and releases (its queue is compacted)', async (t) => {
  const buffer = new RetransmitBuffer(10 * 100);
  for (let seq = 0; seq < 5000; seq++) {
    buffer.hold(seq, seq % 7 === 0 ? ROUTED : new Uint8Array(100));
    if (seq % 50 === 49) buffer.release(seq - 45);
  }
  t.ok(buffer.bytes <= 1000, 'never above the limit');
  t.equal(buffer.lookup(4999) instanceof Uint8Array, true, 'newest held');
  t.equal(buffer.lookup(4991), ROUTED);
  t.equal(buffer.lookup(4960), 'evicted', 'above the ack, pushed out by the byte limit');
  t.equal(buffer.lookup(4900), undefined, 'below the ack: acknowledged');
  buffer.release(5000);
  t.equal(buffer.size, 0);
  t.equal(buffer.bytes, 0);
});

t.test('frame rewrites keep a valid CRC; injection counts exactly and is reproducible', async (t) => {
  const frame = encodeFrame({ src: SRC.CODE_REPO, dst: DST.EMBEDDING, typ: TYP.SEGMENT, payload: new Uint8Array(48).fill(1) });
  const rtx = decodeFrame(withRetransmitFlag(frame));
  t.ok(rtx.crcOk);
  t.equal(rtx.payload[1]! & 1, 1, 'RETRANSMIT flag set');
  t.match(decodeFrame(rewriteCodes(frame, SRC.CHAT, DST.LORA)), { src: SRC.CHAT, dst: DST.LORA, crcOk: true });
  const a = new FaultInjector(0.1, 0.2, 5);
  const b = new FaultInjector(0.1, 0.2, 5);
  const fatesA: string[] = [];
  for (let seq = 0; seq < 5000; seq++) {
    const out = a.apply(seq, frame);
    fatesA.push(out === undefined ? 'drop' : out === frame ? 'send' : 'corrupt');
    if (out !== undefined && out !== frame && decodeFrame(out).crcOk) t.fail(`corrupted seq ${seq} still passes the CRC`);
    if (out !== undefined && out !== frame && (out[0] !== frame[0] || out[4] !== frame[4] || out[5] !== frame[5])) t.fail('header bytes touched');
  }
  for (let seq = 0; seq < 5000; seq++) b.apply(seq, frame);
  t.equal(a.dropped, fatesA.filter((f) => f === 'drop').length);
  t.equal(a.corrupted, fatesA.filter((f) => f === 'corrupt').length);
  t.same([a.dropped, a.corrupted], [b.dropped, b.corrupted], 'same seed, same counts');
  t.ok(Math.abs(a.dropped / 5000 - 0.1) < 0.02 && Math.abs(a.corrupted / 5000 - 0.2) < 0.03, `rates near the asked ones (${a.dropped}, ${a.corrupted})`);
  t.equal(new FaultInjector(0, 0, 1).apply(3, frame), frame, 'inactive injector passes frames through');
});

t.test('token bucket: burst, then paced to the rate', async (t) => {
  const bucket = new TokenBucket(1000, 100, 0);
  t.equal(bucket.delay(0), 0);
  bucket.take(100, 0);
  t.equal(bucket.delay(0), 0, 'at exactly zero tokens it may not send yet');
  bucket.take(1, 0);
  t.ok(bucket.delay(0) > 0, 'in debt: wait');
  t.equal(Math.round(bucket.delay(0)), 1, '1 byte of debt at 1000 B/s is 1 ms');
  t.equal(bucket.delay(10), 0, 'refilled after 10 ms');
  bucket.take(50, 1000);
  t.equal(bucket.delay(1000), 0, 'refill caps at the burst');
});

t.test('cookies: valid only for the address, port and lifetime they were minted for', async (t) => {
  const jar = new CookieJar(30_000, new Uint8Array(32));
  const cookie = jar.mint('127.0.0.1', 5000, 1_000_000);
  t.ok(jar.verify(cookie, '127.0.0.1', 5000, 1_000_000));
  t.ok(jar.verify(cookie, '127.0.0.1', 5000, 1_029_000), 'inside the lifetime');
  t.notOk(jar.verify(cookie, '127.0.0.1', 5000, 1_032_000), 'expired');
  t.notOk(jar.verify(cookie, '127.0.0.1', 5001, 1_000_000), 'other port');
  t.notOk(jar.verify(cookie, '127.0.0.2', 5000, 1_000_000), 'other address');
  t.notOk(new CookieJar(30_000).verify(cookie, '127.0.0.1', 5000, 1_000_000), 'other server secret');
  t.notOk(jar.verify('nope', '127.0.0.1', 5000), 'not bytes');
});

t.test('address guard: 3x budget exactly, handshake window, bounded tables', async (t) => {
  const guard = new AddressGuard(2, 3);
  guard.received('a', 100);
  t.ok(guard.trySend('a', 300), 'exactly 3x is allowed');
  t.notOk(guard.trySend('a', 1), 'one byte more is not');
  guard.received('a', 1);
  t.ok(guard.trySend('a', 3));
  guard.received('b', 10);
  guard.received('c', 10);
  t.equal(guard.usage('a'), undefined, 'oldest address forgotten beyond maxEntries');
  t.ok([1, 2, 3].every(() => guard.allowHandshake('10.0.0.1', 0)));
  t.notOk(guard.allowHandshake('10.0.0.1', 9_999), 'fourth within 10 s refused');
  t.ok(guard.allowHandshake('10.0.0.1', 10_000), 'window slides');
});

t.test('parameters: defaults, clamps, refusals', async (t) => {
  const source = (name: string, src: number, sampleCount: number): SampleSource => ({
    name, src, sampleCount, tokenCount: 0, tokenizer: { name: 't', hash: '', vocabSize: 1 },
    read: () => Promise.reject(new Error('unused')), readBody: () => Promise.reject(new Error('unused')), close: () => Promise.resolve(),
  });
  const catalog = new Catalog([source('a', SRC.CODE_REPO, 10), source('b', SRC.CHAT, 5), source('c', SRC.CHAT, 5)]);
  const options = { ...DEFAULT_SERVER_OPTIONS, maxWindow: 100, maxSessionRate: 1000, maxDatagram: 9000 };
  const r = resolveParams({}, catalog, options, 'udp');
  t.match(r.params, { rank: 0, world: 1, epochs: 1, seed: 0, shuffle: true, remainder: 'pad', datagram: 1472, rate: 1000, window: 100, loss: 'repair', dst: DST.EMBEDDING, cursor: { epoch: 0, position: 0 } });
  t.same(r.params.sources, [{ dataset: 'a', src: SRC.CODE_REPO }, { dataset: 'b', src: SRC.CHAT }, { dataset: 'c', src: SRC.CHAT }], 'natural mix: no weights');
  t.equal(resolveParams({ datagram: 70_000 }, catalog, { ...options, maxDatagram: 65_543 }, 'udp').params.datagram, 65_507, 'UDP caps at 65,507');
  t.equal(resolveParams({ datagram: 70_000 }, catalog, { ...options, maxDatagram: 65_543 }, 'ws').params.datagram, 65_543, 'WebSocket at 65,543');
  t.same(resolveParams({ sources: [{ dataset: 'a', weight: 2 }, { dataset: 'b' }] }, catalog, options, 'udp').weights, [2, 1], 'a missing weight is 1 once any is given');
  const refusals: Array<[unknown, string]> = [
    [{ datagram: 127 }, 'NDP_ERR_BAD_PARAMS'],
    [{ world: 0 }, 'NDP_ERR_BAD_PARAMS'],
    [{ epochs: 0 }, 'NDP_ERR_BAD_PARAMS'],
    [{ loss: 'maybe' }, 'NDP_ERR_BAD_PARAMS'],
    [{ inject: { drop: 0.6, corrupt: 0.6 } }, 'NDP_ERR_BAD_PARAMS'],
    [{ sources: [{ src: SRC.CHAT }] }, 'NDP_ERR_UNKNOWN_DATASET'],
    [{ sources: [{ dataset: 'a' }, { dataset: 'a' }] }, 'NDP_ERR_BAD_PARAMS'],
    [{ sources: [{ dataset: 'a', weight: -1 }] }, 'NDP_ERR_BAD_PARAMS'],
    [{ dst: 'NOWHERE' }, 'NDP_ERR_BAD_PARAMS'],
    [{ cursor: { epoch: 2, position: 0 } }, 'NDP_ERR_BAD_PARAMS'],
    [[], 'NDP_ERR_BAD_PARAMS'],
  ];
  for (const [raw, code] of refusals) {
    t.throws(() => resolveParams(raw, catalog, options, 'udp'), { code }, JSON.stringify(raw));
  }
});
