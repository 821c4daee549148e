import t, { type Test } from 'tap';
import { decodeFrame } from '../../src/protocol/frame.js';
import { Reassembler, sampleKey, type AcceptResult, type DroppedSample, type ReassemblerOptions } from '../../src/protocol/reassembler.js';
import { DST, SEGMENT_FLAG, SRC } from '../../src/protocol/registry.js';
import { segmentSample } from '../../src/protocol/segmenter.js';
import { readTransportHeader, type TransportHeader } from '../../src/protocol/transport-header.js';

interface Piece { header: TransportHeader; fragment: Uint8Array }

/** The fragments of one sample as a receiver sees them. */
function pieces(bodyLength: number, position: number, datagram = 100, extra: { seed?: number; session?: number } = {}): { body: Uint8Array; list: Piece[] } {
  const body = new Uint8Array(bodyLength).map((_, i) => (i * 7 + position + (extra.seed ?? 0)) & 0xff);
  const { frames } = segmentSample({ body, src: SRC.TEXT_CORPUS, dst: DST.EMBEDDING, session: extra.session ?? 1, seq: 0, epoch: 0, position, sample: position, source: 0 }, { datagram });
  return { body, list: frames.map((f) => readTransportHeader(decodeFrame(f).payload)) };
}

function clock(): { now: () => number; advance: (ms: number) => void } {
  let time = 0;
  return { now: () => time, advance: (ms) => (time += ms) };
}

function make(options: Partial<ReassemblerOptions> = {}): { r: Reassembler; dropped: DroppedSample[]; advance: (ms: number) => void } {
  const c = clock();
  const dropped: DroppedSample[] = [];
  const r = new Reassembler({ now: c.now, onDrop: (d) => dropped.push(d), ...options });
  return { r, dropped, advance: c.advance };
}

/** The invariant every test ends with: each sample heard of is delivered, dropped once, or pending. */
function balanced(t: Test, r: Reassembler): void {
  const s = r.stats;
  t.equal(s.samplesSeen, s.samplesDelivered + r.samplesDroppedTotal + s.samplesPending, 'samples: seen = delivered + dropped + pending');
  t.equal(s.fragmentsReceived, s.fragmentsUsed + s.fragmentsDuplicate + s.fragmentsLate + s.fragmentsRejected, 'fragments: received = used + duplicate + late + rejected');
}

// A seeded permutation, so a failure reproduces.
function shuffled<T>(list: T[], seed: number): T[] {
  const out = [...list];
  let s = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

t.test('reassembles in any order, byte for byte', async (t) => {
  const { body, list } = pieces(1000, 3);
  t.equal(list.length, 20);
  for (const seed of [1, 2, 3, 99]) {
    const { r } = make();
    const results = shuffled(list, seed).map((p) => r.accept(p.header, p.fragment));
    const last = results.at(-1)!;
    t.equal(last.status, 'complete');
    if (last.status === 'complete') t.same(last.body, body, `seed ${seed}`);
    t.ok(results.slice(0, -1).every((x) => x.status === 'pending'));
    t.equal(r.stats.bytesPending, 0);
    balanced(t, r);
  }
});

t.test('interleaved samples, reversed order, a single-fragment sample', async (t) => {
  const a = pieces(500, 0);
  const b = pieces(40, 1);
  t.equal(b.list.length, 1);
  const { r } = make();
  const order = [...a.list].reverse().flatMap((p, i) => (i === 3 ? [p, b.list[0]!] : [p]));
  const done = order.map((p) => r.accept(p.header, p.fragment)).filter((x): x is Extract<AcceptResult, { status: 'complete' }> => x.status === 'complete');
  t.same(done.map((d) => d.key), ['1/0/1', '1/0/0']);
  t.same(done[1]!.body, a.body);
  t.same(done[0]!.body, b.body);
  balanced(t, r);
});

t.test('duplicates are counted, not delivered twice; late copies after a drop are late', async (t) => {
  const { list } = pieces(300, 0);
  const { r } = make();
  t.equal(r.accept(list[0]!.header, list[0]!.fragment).status, 'pending');
  t.equal(r.accept(list[0]!.header, list[0]!.fragment).status, 'duplicate');
  for (const p of list.slice(1)) r.accept(p.header, p.fragment);
  t.equal(r.stats.samplesDelivered, 1);
  t.equal(r.accept(list[2]!.header, list[2]!.fragment).status, 'duplicate', 'a copy after delivery');
  t.equal(r.stats.fragmentsDuplicate, 2);
  const other = pieces(300, 1);
  r.accept(other.list[0]!.header, other.list[0]!.fragment);
  t.equal(r.drop(sampleKey(other.list[0]!.header), 'gone'), true);
  t.equal(r.drop(sampleKey(other.list[0]!.header), 'gone'), false, 'dropping twice counts once');
  t.equal(r.accept(other.list[1]!.header, other.list[1]!.fragment).status, 'late');
  t.same(r.stats.samplesDropped, { gone: 1 });
  balanced(t, r);
});

t.test('drop() of a key never seen is counted and remembered', async (t) => {
  const { r, dropped } = make();
  const { list } = pieces(200, 5);
  t.equal(r.drop(sampleKey(list[0]!.header), 'seq_gap'), true);
  t.equal(r.accept(list[0]!.header, list[0]!.fragment).status, 'late');
  t.equal(dropped.length, 1);
  t.equal(dropped[0]!.header, undefined);
  balanced(t, r);
});

t.test('fragment mismatch: count, length, CRC, sample, source, EVAL, fragment size', async (t) => {
  const { list } = pieces(300, 0);
  const first = list[0]!;
  const second = list[1]!;
  const variants: Array<[string, Partial<TransportHeader>]> = [
    ['bodyCrc', { bodyCrc: (second.header.bodyCrc ^ 1) >>> 0 }],
    ['sample', { sample: 77 }],
    ['source', { source: 3 }],
    ['EVAL', { flags: SEGMENT_FLAG.EVAL }],
    ['fragCount+bodyLength', { fragCount: 6, bodyLength: 310 }],
  ];
  for (const [name, change] of variants) {
    const { r, dropped } = make();
    r.accept(first.header, first.fragment);
    const result = r.accept({ ...second.header, ...change }, second.fragment);
    t.equal(result.status, 'dropped', name);
    if (result.status === 'dropped') t.equal(result.reason, 'fragment_mismatch', name);
    t.equal(dropped.length, 1);
    t.equal(r.accept(list[2]!.header, list[2]!.fragment).status, 'late', `${name}: the rest is late`);
    balanced(t, r);
  }
  // A fragment size that differs from the one the first fragment implied.
  const { r } = make();
  r.accept(first.header, first.fragment);
  const coarse = pieces(300, 0, 152).list;
  const result = r.accept(coarse.at(-1)!.header, coarse.at(-1)!.fragment);
  t.equal(result.status, 'dropped');
  if (result.status === 'dropped') t.equal(result.reason, 'fragment_mismatch');
  t.equal(r.stats.bytesPending, 0);
  balanced(t, r);
});

t.test('bad segment: a fragment that contradicts itself', async (t) => {
  const { list } = pieces(300, 0);
  const p = list[1]!;
  const cases: Array<[string, TransportHeader, Uint8Array]> = [
    ['empty fragment', p.header, new Uint8Array(0)],
    ['offset not index × size', { ...p.header, fragOffset: p.header.fragOffset + 1 }, p.fragment],
    ['count not ⌈length / size⌉', { ...p.header, fragCount: 9 }, p.fragment],
    ['last fragment does not end the body', { ...list.at(-1)!.header, bodyLength: 301 }, list.at(-1)!.fragment],
    ['index outside count', { ...p.header, fragIndex: 7 }, p.fragment],
  ];
  for (const [name, header, fragment] of cases) {
    const { r } = make();
    const result = r.accept(header, fragment);
    t.equal(result.status, 'dropped', name);
    if (result.status === 'dropped') t.equal(result.reason, 'bad_segment', name);
    balanced(t, r);
  }
  // On a sample already pending, it drops the sample.
  const { r } = make();
  r.accept(list[0]!.header, list[0]!.fragment);
  t.equal(r.accept(p.header, new Uint8Array(0)).status, 'dropped');
  t.same(r.stats.samplesDropped, { bad_segment: 1 });
  balanced(t, r);
});

t.test('body CRC-32 checked after reassembly', async (t) => {
  const { list } = pieces(300, 0);
  const { r } = make();
  const damaged = Uint8Array.from(list[2]!.fragment);
  damaged[0]! ^= 0x10;
  const results = list.map((p, i) => r.accept(p.header, i === 2 ? damaged : p.fragment));
  const last = results.at(-1)!;
  t.equal(last.status, 'dropped');
  if (last.status === 'dropped') t.equal(last.reason, 'body_crc');
  t.same(r.stats.samplesDropped, { body_crc: 1 });
  balanced(t, r);
});

t.test('maxIncompleteSamples: at the limit nothing is evicted, one more evicts the oldest', async (t) => {
  const { r, dropped } = make({ maxIncompleteSamples: 3 });
  const samples = [0, 1, 2, 3].map((i) => pieces(300, i).list);
  for (const s of samples.slice(0, 3)) r.accept(s[0]!.header, s[0]!.fragment);
  t.equal(r.stats.samplesPending, 3);
  t.equal(dropped.length, 0);
  r.accept(samples[1]![1]!.header, samples[1]![1]!.fragment); // progress on 1: now 0 is the oldest
  r.accept(samples[3]![0]!.header, samples[3]![0]!.fragment);
  t.same(dropped.map((d) => [d.key, d.reason]), [['1/0/0', 'evicted_count']]);
  t.same(r.pendingKeys(), ['1/0/2', '1/0/1', '1/0/3']);
  balanced(t, r);
});

t.test('maxBytes: exactly full is fine, one byte more evicts by least recent progress', async (t) => {
  const { r, dropped } = make({ maxBytes: 900 });
  const s = [0, 1, 2].map((i) => pieces(300, i).list);
  for (const x of s) r.accept(x[0]!.header, x[0]!.fragment);
  t.equal(r.stats.bytesPending, 900);
  t.equal(dropped.length, 0);
  const big = pieces(301, 3).list;
  r.accept(big[0]!.header, big[0]!.fragment);
  t.same(dropped.map((d) => d.reason), ['evicted_memory', 'evicted_memory'], 'two evictions make room for 301 bytes');
  t.equal(r.stats.bytesPending, 601);
  balanced(t, r);
});

t.test('maxSampleBytes: at the limit accepted, one byte over dropped at the first fragment', async (t) => {
  const { r } = make({ maxSampleBytes: 300 });
  const ok = pieces(300, 0).list;
  t.equal(r.accept(ok[0]!.header, ok[0]!.fragment).status, 'pending');
  const over = pieces(301, 1).list;
  const result = r.accept(over[0]!.header, over[0]!.fragment);
  t.equal(result.status, 'dropped');
  if (result.status === 'dropped') t.equal(result.reason, 'sample_too_large');
  t.equal(r.accept(over[1]!.header, over[1]!.fragment).status, 'late');
  balanced(t, r);
});

t.test('timeout: counted from the last progress, at exactly timeoutMs', async (t) => {
  const { r, dropped, advance } = make({ timeoutMs: 1000 });
  const a = pieces(300, 0).list;
  const b = pieces(300, 1).list;
  r.accept(a[0]!.header, a[0]!.fragment);
  advance(600);
  r.accept(b[0]!.header, b[0]!.fragment);
  advance(399);
  t.equal(r.expire(), 0, '999 ms idle: kept');
  advance(1);
  t.equal(r.expire(), 1, '1000 ms idle: dropped');
  t.same(dropped.map((d) => [d.key, d.reason]), [['1/0/0', 'timeout']]);
  advance(500);
  r.accept(b[1]!.header, b[1]!.fragment); // progress restarts b's clock
  advance(999);
  t.equal(r.expire(), 0);
  advance(1);
  t.equal(r.accept(a[1]!.header, a[1]!.fragment).status, 'late', 'accept() expires first; a is already gone');
  t.same(r.stats.samplesDropped, { timeout: 2 });
  balanced(t, r);
});

t.test('dropAll at the end of a session; foreign sessions are separate samples', async (t) => {
  const { r } = make();
  const mine = pieces(300, 0, 100, { session: 1 }).list;
  const foreign = pieces(300, 0, 100, { session: 2, seed: 5 }).list;
  r.accept(mine[0]!.header, mine[0]!.fragment);
  r.accept(foreign[0]!.header, foreign[0]!.fragment);
  t.equal(r.stats.samplesPending, 2);
  t.equal(r.dropAll('session_end'), 2);
  t.same(r.stats.samplesDropped, { session_end: 2 });
  balanced(t, r);
});

t.test('rememberFinished bounds the memory of finished keys', async (t) => {
  const { r } = make({ rememberFinished: 2 });
  for (let i = 0; i < 3; i++) r.drop(`1/0/${i}`, 'gone');
  t.equal(r.drop('1/0/0', 'gone'), true, 'the oldest key was forgotten');
  t.equal(r.drop('1/0/2', 'gone'), false, 'recent keys are remembered');
  balanced(t, r);
});

t.test('options are validated', async (t) => {
  t.throws(() => new Reassembler({ maxIncompleteSamples: 0 }), RangeError);
  t.throws(() => new Reassembler({ maxBytes: Number.NaN }), RangeError);
  t.throws(() => new Reassembler({ timeoutMs: -1 }), RangeError);
});

t.test('many samples shuffled with random drops and duplicates: the accounting adds up', async (t) => {
  const { r } = make({ maxIncompleteSamples: 8 });
  const all = Array.from({ length: 60 }, (_, i) => pieces(200 + i * 13, i).list).flat();
  let s = 12345;
  const rand = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const arrivals = shuffled(all, 7).flatMap((p) => (rand() < 0.05 ? [] : rand() < 0.05 ? [p, p] : [p]));
  for (const p of arrivals) r.accept(p.header, p.fragment);
  r.dropAll('end');
  const st = r.stats;
  t.equal(st.samplesPending, 0);
  t.equal(st.samplesSeen, st.samplesDelivered + r.samplesDroppedTotal);
  t.ok(st.samplesDelivered > 0);
  balanced(t, r);
});
