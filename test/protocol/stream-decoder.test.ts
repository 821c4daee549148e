import t from 'tap';
import { encodeFrame } from '../../src/protocol/frame.js';
import { DST, SRC, TYP } from '../../src/protocol/registry.js';
import { StreamDecoder, decodeStream, type StreamEvent } from '../../src/protocol/stream-decoder.js';

const frameOf = (n: number, fill = n & 0xff): Uint8Array => encodeFrame({ src: SRC.TEXT_CORPUS, dst: DST.EMBEDDING, typ: TYP.TOKEN_IDS, payload: new Uint8Array(n).fill(fill) });
const concat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** What a receiver learns from a run: frames (hex, CRC status) and skipped runs (bytes, code). */
function summary(events: StreamEvent[]): string[] {
  return events.map((e) => (e.type === 'frame' ? `frame ${e.frame.len} ${e.frame.crcOk ? 'ok' : 'bad'} ${hex(e.bytes).slice(0, 16)}` : `skip ${e.bytes} ${e.error.code}`));
}

function feed(decoder: StreamDecoder, chunks: Uint8Array[]): StreamEvent[] {
  return [...chunks.flatMap((c) => decoder.push(c)), ...decoder.end()];
}

const a = frameOf(0);
const b = frameOf(12);
const c = frameOf(300);
const stream = concat(a, b, c);
const expected = summary(decodeStream(stream).events);

t.test('several whole frames in one chunk: every frame, as views into the chunk', async (t) => {
  const d = new StreamDecoder();
  const events = d.push(stream);
  t.same(summary(events), [`frame 0 ok ${hex(a).slice(0, 16)}`, `frame 12 ok ${hex(b).slice(0, 16)}`, `frame 300 ok ${hex(c).slice(0, 16)}`]);
  for (const e of events) if (e.type === 'frame') t.equal(e.bytes.buffer, stream.buffer, 'no copy');
  t.equal(d.bufferedBytes, 0);
  t.same(d.end(), []);
  t.same(d.stats, { framesOk: 3, framesBadCrc: 0, bytesSkipped: 0, skippedRuns: {} });
});

t.test('byte at a time: "need more" is waiting, and the result is the same', async (t) => {
  const d = new StreamDecoder();
  const events: StreamEvent[] = [];
  for (let i = 0; i < stream.length; i++) {
    const got = d.push(stream.subarray(i, i + 1));
    events.push(...got);
  }
  t.same(summary([...events, ...d.end()]), expected);
});

t.test('every split point into two reads, and three-way splits', async (t) => {
  let bad = 0;
  for (let i = 0; i <= stream.length; i++) {
    if (summary(feed(new StreamDecoder(), [stream.subarray(0, i), stream.subarray(i)])).join() !== expected.join()) bad++;
  }
  for (let i = 0; i < stream.length; i += 7) {
    for (let j = i; j <= stream.length; j += 11) {
      if (summary(feed(new StreamDecoder(), [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)])).join() !== expected.join()) bad++;
    }
  }
  t.equal(bad, 0);
});

t.test('a max-LEN frame (65,535 payload bytes) byte at a time', async (t) => {
  const big = frameOf(65_535, 0x5a);
  const d = new StreamDecoder();
  const events: StreamEvent[] = [];
  for (let i = 0; i < big.length; i++) events.push(...d.push(big.subarray(i, i + 1)));
  t.equal(events.length, 1);
  const only = events[0]!;
  t.same(only.type === 'frame' ? only.bytes : undefined, big);
});

t.test('garbage before, between and after frames is skipped, counted, and reported once per run', async (t) => {
  const junk = (n: number): Uint8Array => new Uint8Array(n).map((_, i) => (i * 37 + 1) & 0x7f);
  const s = concat(junk(5), a, junk(17), b, c, junk(3));
  for (const chunking of [[s], [...s].map((x) => Uint8Array.of(x))]) {
    const d = new StreamDecoder();
    t.same(summary(feed(d, chunking)), ['skip 5 NDP_ERR_BAD_MAGIC', expected[0], 'skip 17 NDP_ERR_BAD_MAGIC', expected[1], expected[2], 'skip 3 NDP_ERR_BAD_MAGIC']);
    t.equal(d.stats.bytesSkipped, 25);
    t.same(d.stats.skippedRuns, { NDP_ERR_BAD_MAGIC: 3 });
  }
});

t.test('a stray 0xAA with a plausible LEN inside garbage is not taken for a frame (CRC confirms)', async (t) => {
  const decoy = Uint8Array.of(0x01, 0xaa, 0x01, 0x01, 0x01, 0x00, 0x02, 0x10, 0x20, 0x00, 0x00);
  const d = new StreamDecoder();
  t.same(summary(feed(d, [concat(decoy, b)])), [`skip ${decoy.length} NDP_ERR_BAD_MAGIC`, expected[1]]);
});

t.test('in step, a frame with a bad CRC is reported as a frame with crcOk false', async (t) => {
  const broken = Uint8Array.from(b);
  broken[8]! ^= 0x01;
  const d = new StreamDecoder();
  const events = feed(d, [concat(a, broken, c)]);
  t.same(summary(events), [expected[0], `frame 12 bad ${hex(broken).slice(0, 16)}`, expected[2]]);
  t.same(d.stats, { framesOk: 2, framesBadCrc: 1, bytesSkipped: 0, skippedRuns: {} });
});

t.test('maxFrameBytes: a frame of exactly the limit passes, one byte more is skipped as too large', async (t) => {
  const atLimit = frameOf(100);
  const over = frameOf(101);
  const d = new StreamDecoder({ maxFrameBytes: 108 });
  t.same(summary(feed(d, [concat(atLimit, over, a)])), [
    `frame 100 ok ${hex(atLimit).slice(0, 16)}`,
    `skip ${over.length} NDP_ERR_PAYLOAD_TOO_LARGE`,
    expected[0],
  ]);
  t.throws(() => new StreamDecoder({ maxFrameBytes: 7 }), RangeError);
  t.throws(() => new StreamDecoder({ maxFrameBytes: 65_544 }), RangeError);
});

t.test('memory stays bounded: 1 MiB of garbage and an oversize header are never buffered', async (t) => {
  const d = new StreamDecoder({ maxFrameBytes: 1000 });
  let peak = 0;
  for (let i = 0; i < 256; i++) {
    d.push(new Uint8Array(4096).fill(i === 7 ? 0xaa : 0x55));
    peak = Math.max(peak, d.bufferedBytes);
  }
  t.ok(peak <= 1000 + 4096, `peak ${peak} ≤ maxFrameBytes + one chunk`);
  const events = [...d.push(b), ...d.end()];
  t.same(summary(events), [`skip ${256 * 4096} NDP_ERR_BAD_MAGIC`, expected[1]]);
});

t.test('the stream ends inside a frame: NDP_ERR_TRUNCATED with the bytes held; the decoder is reusable', async (t) => {
  const d = new StreamDecoder();
  t.same(summary(feed(d, [concat(a, c.subarray(0, 50))])), [expected[0], 'skip 50 NDP_ERR_TRUNCATED']);
  t.same(summary(feed(d, [concat(a, Uint8Array.of(0xaa, 0x01))])), [expected[0], 'skip 2 NDP_ERR_TRUNCATED']);
  t.same(summary(feed(d, [stream])), expected, 'works again after end()');
});
