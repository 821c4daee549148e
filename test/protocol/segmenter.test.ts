import t from 'tap';
import { crc32 } from 'node:zlib';
import { decodeFrame } from '../../src/protocol/frame.js';
import { DST, SEGMENT_FLAG, SRC, TYP } from '../../src/protocol/registry.js';
import { encodeSampleBody } from '../../src/protocol/sample-body.js';
import {
  DEFAULT_DATAGRAM,
  MAX_FRAGMENTS,
  MAX_FRAME_BYTES,
  MIN_DATAGRAM,
  fragmentBytes,
  fragmentCount,
  segmentSample,
  segmentedSize,
  writeSegment,
  writeSegments,
  type SegmentInput,
} from '../../src/protocol/segmenter.js';
import { readTransportHeader } from '../../src/protocol/transport-header.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function input(body: Uint8Array, extra: Partial<SegmentInput> = {}): SegmentInput {
  return { body, src: SRC.CODE_REPO, dst: DST.EMBEDDING, session: 0x01020304, seq: 0, epoch: 7, position: 9, sample: 11, source: 2, ...extra };
}

// Expected bytes computed independently (Python: binascii.crc_hqx(frame, 0xFFFF), zlib.crc32(body)).
t.test('byte-exact frames for a 20-byte body in 8-byte fragments, seq wrapping past 2^32', async (t) => {
  const body = encodeSampleBody({ tokens: Int32Array.from([1, 2, -3]) });
  t.equal(hex(body), '01000000000000030000000100000002fffffffd');
  const datagram = 8 + 40 + 8;
  const { buffer, frames, nextSeq } = segmentSample(input(body, { seq: 0xfffffffe, flags: SEGMENT_FLAG.EVAL }), { datagram });
  t.same(frames.map(hex), [
    'aa02011000300104020001020304fffffffe00000007000000090000000b0000000300000000000000148a76cae90100000000000003bfcd',
    'aa02011000300104020001020304ffffffff00000007000000090000000b0001000300000008000000148a76cae90000000100000002543e',
    'aa020110002c01060200010203040000000000000007000000090000000b0002000300000010000000148a76cae9fffffffde330',
  ]);
  t.equal(nextSeq, 1, 'seq wraps modulo 2^32');
  t.equal(buffer.length, segmentedSize(body.length, datagram));
  t.equal(hex(buffer), frames.map(hex).join(''), 'frames are views laid back to back in one buffer');
  for (const f of frames) t.equal(f.buffer, buffer.buffer, 'a view, not a copy');
});

t.test('every frame decodes, fits the datagram, and the fragments tile the body', async (t) => {
  const body = new Uint8Array(10_000).map((_, i) => (i * 31) & 0xff);
  for (const datagram of [MIN_DATAGRAM, 100, DEFAULT_DATAGRAM, 65_507, MAX_FRAME_BYTES]) {
    const { frames } = segmentSample(input(body, { seq: 5 }), { datagram });
    t.equal(frames.length, fragmentCount(body.length, datagram), `count at ${datagram}`);
    const rebuilt = new Uint8Array(body.length);
    frames.forEach((bytes, i) => {
      const frame = decodeFrame(bytes);
      if (!(frame.crcOk && frame.typ === TYP.SEGMENT && bytes.length <= datagram)) t.fail(`frame ${i} at ${datagram}`);
      const { header, fragment } = readTransportHeader(frame.payload);
      if (header.seq !== 5 + i || header.fragIndex !== i || header.bodyCrc !== crc32(body)) t.fail(`header ${i} at ${datagram}`);
      if (((header.flags & SEGMENT_FLAG.LAST_FRAGMENT) !== 0) !== (i === frames.length - 1)) t.fail(`LAST_FRAGMENT on ${i}`);
      rebuilt.set(fragment, header.fragOffset);
    });
    t.same(rebuilt, body, `tiles at datagram ${datagram}`);
  }
  t.equal(fragmentBytes(), 1472 - 48, 'default F for a 1500-byte MTU');
});

t.test('limits: datagram bounds, empty body, fragCount u16', async (t) => {
  const body = new Uint8Array(10);
  t.throws(() => segmentSample(input(body), { datagram: MIN_DATAGRAM - 1 }), RangeError);
  t.throws(() => segmentSample(input(body), { datagram: MAX_FRAME_BYTES + 1 }), RangeError);
  t.equal(segmentSample(input(body), { datagram: MIN_DATAGRAM }).frames.length, 10, 'one body byte per frame at the minimum');
  t.equal(segmentSample(input(body), { datagram: MAX_FRAME_BYTES }).frames[0]!.length, 58);
  t.throws(() => segmentSample(input(new Uint8Array(0))), RangeError);
  t.equal(fragmentCount(MAX_FRAGMENTS, MIN_DATAGRAM), MAX_FRAGMENTS, 'exactly 65,535 fragments is allowed');
  t.throws(() => fragmentCount(MAX_FRAGMENTS + 1, MIN_DATAGRAM), { code: 'NDP_ERR_PAYLOAD_TOO_LARGE' });
  t.throws(() => segmentSample(input(body, { source: 256 })), RangeError);
  t.throws(() => segmentSample(input(body, { session: -1 })), RangeError);
});

t.test('writeSegment rewrites one fragment (retransmission) identical but for its flags', async (t) => {
  const body = new Uint8Array(3000).map((_, i) => i & 0xff);
  const all = segmentSample(input(body, { seq: 100 }));
  const again = new Uint8Array(DEFAULT_DATAGRAM);
  const end = writeSegment(again, 0, input(body, { seq: 100, flags: SEGMENT_FLAG.RETRANSMIT }), 1);
  const original = readTransportHeader(decodeFrame(all.frames[1]!).payload);
  const resent = readTransportHeader(decodeFrame(again.subarray(0, end)).payload);
  t.same({ ...resent.header, flags: 0 }, { ...original.header, flags: 0 });
  t.equal(resent.header.seq, 101, 'a retransmission keeps its original seq');
  t.equal(resent.header.flags, SEGMENT_FLAG.RETRANSMIT);
  t.same(resent.fragment, original.fragment);
  t.throws(() => writeSegment(again, 0, input(body), 3), RangeError);
  t.throws(() => writeSegment(new Uint8Array(100), 0, input(body), 0), RangeError, 'a too-small output is refused');
});

t.test('writeSegments packs several samples into one caller buffer', async (t) => {
  const a = new Uint8Array(50).fill(1);
  const b = new Uint8Array(70).fill(2);
  const out = new Uint8Array(segmentedSize(a.length) + segmentedSize(b.length));
  const first = writeSegments(out, 0, input(a, { position: 0 }));
  const second = writeSegments(out, first.end, input(b, { position: 1, seq: first.nextSeq }));
  t.equal(second.end, out.length);
  t.equal(readTransportHeader(decodeFrame(second.frames[0]!).payload).header.seq, 1);
});
