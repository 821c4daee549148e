import t from 'tap';
import { decodeFrame, encodeFrame, frameSize, readFrameAt, writeFrame } from '../../src/protocol/frame.js';
import { DST, SRC, TYP } from '../../src/protocol/registry.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// Expected bytes computed independently: Python binascii.crc_hqx(frame, 0xFFFF).
t.test('exact bytes of a seed TOKEN_IDS frame, and back', async (t) => {
  const frame = encodeFrame({ src: SRC.CODE_REPO, dst: DST.LORA, typ: TYP.TOKEN_IDS, payload: Uint8Array.of(0, 0, 0, 1, 0, 0, 0, 2) });
  t.equal(hex(frame), 'aa0205010008000000010000000281b0');
  t.same(decodeFrame(frame), { src: 2, dst: 5, typ: 1, len: 8, payload: frame.subarray(6, 14), crc: 0x81b0, crcOk: true });
});

t.test('empty payload is an 8-byte frame; the largest is 65,543 bytes', async (t) => {
  const empty = encodeFrame({ src: 1, dst: 1, typ: 1, payload: new Uint8Array(0) });
  t.equal(empty.length, 8);
  t.equal(decodeFrame(empty).len, 0);
  const max = encodeFrame({ src: 1, dst: 1, typ: 1, payload: new Uint8Array(65_535) });
  t.equal(max.length, 65_543);
  t.equal(decodeFrame(max).crcOk, true);
  t.throws(() => encodeFrame({ src: 1, dst: 1, typ: 1, payload: new Uint8Array(65_536) }), { code: 'NDP_ERR_PAYLOAD_TOO_LARGE' });
});

t.test('codes must be bytes', async (t) => {
  for (const bad of [-1, 256, 1.5, Number.NaN]) t.throws(() => encodeFrame({ src: bad, dst: 1, typ: 1, payload: new Uint8Array(0) }), RangeError);
});

t.test('decodeFrame errors carry their codes; a CRC mismatch is a result', async (t) => {
  const frame = encodeFrame({ src: 1, dst: 1, typ: 1, payload: Uint8Array.of(1, 2, 3) });
  t.throws(() => decodeFrame(new Uint8Array(0)), { code: 'NDP_ERR_TRUNCATED' });
  t.throws(() => decodeFrame(frame.subarray(0, 5)), { code: 'NDP_ERR_TRUNCATED' });
  t.throws(() => decodeFrame(frame.subarray(0, frame.length - 1)), { code: 'NDP_ERR_TRUNCATED' });
  t.throws(() => decodeFrame(Uint8Array.of(0xab, ...frame.subarray(1))), { code: 'NDP_ERR_BAD_MAGIC' });
  t.throws(() => decodeFrame(Uint8Array.of(...frame, 0)), { code: 'NDP_ERR_TRAILING_BYTES' });
  const damaged = Uint8Array.from(frame);
  damaged[7]! ^= 4;
  t.equal(decodeFrame(damaged).crcOk, false);
});

t.test('writeFrame: into a buffer at an offset, and zero-copy when the payload is already in place', async (t) => {
  const out = new Uint8Array(100).fill(0xee);
  const payload = Uint8Array.of(9, 8, 7);
  const end = writeFrame(out, 10, { src: 1, dst: 2, typ: 3, payload });
  t.equal(end, 10 + frameSize(3));
  t.equal(out[9], 0xee, 'bytes before are untouched');
  t.equal(out[end], 0xee, 'bytes after are untouched');
  t.same(decodeFrame(out.subarray(10, end)).payload, payload);
  // Build the payload in place first, then frame it: same bytes.
  const inPlace = new Uint8Array(20);
  inPlace.set(payload, 6);
  const e2 = writeFrame(inPlace, 0, { src: 1, dst: 2, typ: 3, payload: inPlace.subarray(6, 9) });
  t.same(inPlace.subarray(0, e2), out.subarray(10, end));
  t.throws(() => writeFrame(new Uint8Array(10), 0, { src: 1, dst: 2, typ: 3, payload }), RangeError);
});

t.test('readFrameAt walks concatenated frames and says "need more" with undefined', async (t) => {
  const a = encodeFrame({ src: 1, dst: 1, typ: 1, payload: Uint8Array.of(1) });
  const b = encodeFrame({ src: 2, dst: 2, typ: 2, payload: Uint8Array.of(2, 2) });
  const both = Uint8Array.of(...a, ...b);
  const first = readFrameAt(both, 0)!;
  t.equal(first.end, a.length);
  const second = readFrameAt(both, first.end)!;
  t.equal(second.frame.src, 2);
  t.equal(readFrameAt(both, second.end), undefined);
  t.equal(readFrameAt(both.subarray(0, a.length + 3), a.length), undefined);
  t.throws(() => readFrameAt(both, 1), { code: 'NDP_ERR_BAD_MAGIC' });
});
