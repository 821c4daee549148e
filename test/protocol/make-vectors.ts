/**
 * Builds the conformance vectors of protocol-spec/vectors/ (schema: protocol-spec/vectors/README.md).
 * Run `node dist/test/protocol/make-vectors.js` after a deliberate wire change to rewrite the JSON;
 * test/protocol/vectors.test.ts fails while the committed files differ from what this builds.
 *
 * Inputs are fixed (no randomness) so the files are stable; expected results come from the spec's
 * rules, computed here with the reference implementation and cross-checked by the conformance test.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { crc32 } from 'node:zlib';
import { encode } from '@msgpack/msgpack';
import { crc16 } from '../../src/protocol/crc16.js';
import { encodeControlFrame } from '../../src/protocol/control.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { CONTROL, DST, SRC, TYP } from '../../src/protocol/registry.js';
import { encodeSampleBody } from '../../src/protocol/sample-body.js';
import { segmentSample, type SegmentInput } from '../../src/protocol/segmenter.js';
import { writeTransportHeader, type TransportHeader } from '../../src/protocol/transport-header.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
const ramp = (n: number, mul = 1): Uint8Array => new Uint8Array(n).map((_, i) => (i * mul) & 0xff);

function frame(src: number, dst: number, typ: number, payload: Uint8Array): Uint8Array {
  return encodeFrame({ src, dst, typ, payload });
}

function flip(b: Uint8Array, bit: number): Uint8Array {
  const out = Uint8Array.from(b);
  out[bit >> 3]! ^= 0x80 >> (bit & 7);
  return out;
}

function expectFrame(b: Uint8Array): object {
  const len = (b[4]! << 8) | b[5]!;
  const crc = (b[6 + len]! << 8) | b[7 + len]!;
  return { frame: { src: b[1], dst: b[2], typ: b[3], len, payload: hex(b.subarray(6, 6 + len)), crc, crcOk: crc16(b, undefined, 0, 6 + len) === crc } };
}

function frameVectors(): object {
  const tokens = new Uint8Array(12);
  new DataView(tokens.buffer).setInt32(0, 151_643);
  new DataView(tokens.buffer).setInt32(4, 0);
  new DataView(tokens.buffer).setInt32(8, -1);
  const tokenFrame = frame(SRC.TEXT_CORPUS, DST.EMBEDDING, TYP.TOKEN_IDS, tokens);
  const seedFrame = frame(SRC.CODE_REPO, DST.LORA, TYP.TOKEN_IDS, bytes('0000000100000002'));
  const valid: Array<[string, string, Uint8Array]> = [
    ['token_ids', 'TYP TOKEN_IDS: three int32 BE token ids (151643, 0, -1)', tokenFrame],
    ['token_ids_seed_codes', 'seed codes SRC CODE_REPO, DST LORA, tokens 1 and 2', seedFrame],
    ['float32', 'TYP FLOAT32: 1.0 and -2.5 as float32 BE', frame(SRC.GRADIENT, DST.FFN, TYP.FLOAT32, bytes('3f800000c0200000'))],
    ['float16', 'TYP FLOAT16: 1.0, -2.0 as IEEE half BE', frame(SRC.GRADIENT, DST.ATTENTION, TYP.FLOAT16, bytes('3c00c000'))],
    ['bfloat16', 'TYP BFLOAT16: 1.0, -2.0 as bfloat16 BE', frame(SRC.GRADIENT, DST.LORA, TYP.BFLOAT16, bytes('3f80c000'))],
    ['segment', 'TYP SEGMENT: a one-fragment sample (see segments.json)', frame(SRC.SYNTHETIC, DST.EMBEDDING, TYP.SEGMENT, segmentPayload())],
    ['control', 'TYP CONTROL: HEARTBEAT {t: 8, session: 7}', encodeControlFrame({ t: CONTROL.HEARTBEAT, session: 7 })],
    ['tensor', 'TYP TENSOR: opaque payload at the frame layer', frame(SRC.TRAINER, DST.WORKER, TYP.TENSOR, ramp(10, 3))],
    ['unknown_codes', 'SRC 0x7f, DST 0x7e, TYP 0x7d are not in the registry: still a valid frame', frame(0x7f, 0x7e, 0x7d, ramp(5))],
    ['empty_payload', 'LEN 0: the frame is 8 bytes', frame(SRC.TEXT_CORPUS, DST.EMBEDDING, TYP.TOKEN_IDS, new Uint8Array(0))],
    ['max_len', 'LEN 65535: the largest frame, 65543 bytes', frame(SRC.TEXT_CORPUS, DST.EMBEDDING, TYP.FLOAT32, ramp(65_535, 7))],
    ['crc_needs_all_bits', 'payload of 0xff bytes; CRC over magic..payload', frame(0xff, 0xff, 0xff, new Uint8Array(7).fill(0xff))],
  ];
  const vectors: object[] = valid.map(([name, description, b]) => ({ name, description, hex: hex(b), expect: expectFrame(b) }));
  const bad: Array<[string, string, Uint8Array]> = [
    ['flip_payload_bit', 'one payload bit flipped: decodes, crcOk false', flip(tokenFrame, 6 * 8 + 5)],
    ['flip_crc_bit', 'one bit of the CRC flipped: decodes, crcOk false', flip(tokenFrame, (tokenFrame.length - 1) * 8)],
    ['flip_src_bit', 'one bit of SRC flipped: decodes (SRC 0x81), crcOk false', flip(tokenFrame, 8)],
    ['flip_two_bits', 'two payload bits flipped: decodes, crcOk false', flip(flip(tokenFrame, 60), 90)],
  ];
  for (const [name, description, b] of bad) vectors.push({ name, description, hex: hex(b), expect: expectFrame(b) });
  const errors: Array<[string, string, Uint8Array, string]> = [
    ['bad_magic', 'first byte 0xab', Uint8Array.of(0xab, ...tokenFrame.subarray(1)), 'NDP_ERR_BAD_MAGIC'],
    ['bad_magic_zero', 'first byte 0x00', Uint8Array.of(0x00, ...tokenFrame.subarray(1)), 'NDP_ERR_BAD_MAGIC'],
    ['empty_input', 'no bytes at all', new Uint8Array(0), 'NDP_ERR_TRUNCATED'],
    ['header_only_part', '3 of the 6 header bytes', tokenFrame.subarray(0, 3), 'NDP_ERR_TRUNCATED'],
    ['truncated_payload', 'LEN 12 but only 5 payload bytes and no CRC', tokenFrame.subarray(0, 11), 'NDP_ERR_TRUNCATED'],
    ['truncated_crc', 'the last CRC byte missing', tokenFrame.subarray(0, tokenFrame.length - 1), 'NDP_ERR_TRUNCATED'],
    ['len_longer_than_data', 'LEN 0x00ff with 12 payload bytes', Uint8Array.of(...tokenFrame.subarray(0, 4), 0x00, 0xff, ...tokenFrame.subarray(6)), 'NDP_ERR_TRUNCATED'],
    ['flip_len_bit_longer', 'a bit of LEN flipped (12 → 44): now truncated', flip(tokenFrame, 5 * 8 + 2), 'NDP_ERR_TRUNCATED'],
    ['trailing_bytes', 'one byte after a whole frame', Uint8Array.of(...tokenFrame, 0x00), 'NDP_ERR_TRAILING_BYTES'],
    ['two_frames', 'two whole frames are not one frame', Uint8Array.of(...seedFrame, ...seedFrame), 'NDP_ERR_TRAILING_BYTES'],
    ['flip_len_bit_shorter', 'a bit of LEN flipped (12 → 4): bytes left over', flip(tokenFrame, 5 * 8 + 4), 'NDP_ERR_TRAILING_BYTES'],
  ];
  for (const [name, description, b, code] of errors) vectors.push({ name, description, hex: hex(b), expect: { error: code } });
  return {
    description: 'decodeFrame: bytes that must be exactly one whole frame (a UDP datagram, a record). NDP.md §3.',
    vectors,
  };
}

function streamVectors(): object {
  const a = frame(SRC.TEXT_CORPUS, DST.EMBEDDING, TYP.TOKEN_IDS, bytes('00000001'));
  const b = frame(SRC.CODE_REPO, DST.EMBEDDING, TYP.TOKEN_IDS, new Uint8Array(0));
  const c = frame(SRC.CHAT, DST.EVAL, TYP.TOKEN_IDS, ramp(40, 5));
  const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));
  const broken = flip(c, 100);
  const decoy = bytes('01aa010101000210200000');
  const cases: Array<[string, string, Uint8Array[], object[], number?]> = [
    ['three_frames_one_chunk', 'frames back to back in one read', [cat(a, b, c)], [{ frame: hex(a), crcOk: true }, { frame: hex(b), crcOk: true }, { frame: hex(c), crcOk: true }]],
    ['split_everywhere', 'the same bytes in reads of 1, 2, 3 … bytes', splitRamp(cat(a, b, c)), [{ frame: hex(a), crcOk: true }, { frame: hex(b), crcOk: true }, { frame: hex(c), crcOk: true }]],
    ['garbage_between', '3 bytes of garbage before, 5 between, 2 after', [cat(bytes('000102'), a, bytes('0304050607'), b, bytes('aa01'))], [{ skipped: 3, code: 'NDP_ERR_BAD_MAGIC' }, { frame: hex(a), crcOk: true }, { skipped: 5, code: 'NDP_ERR_BAD_MAGIC' }, { frame: hex(b), crcOk: true }, { skipped: 2, code: 'NDP_ERR_TRUNCATED' }]],
    ['decoy_magic', 'a stray 0xAA with a plausible LEN but a wrong CRC is garbage', [cat(decoy, a)], [{ skipped: decoy.length, code: 'NDP_ERR_BAD_MAGIC' }, { frame: hex(a), crcOk: true }]],
    ['bad_crc_in_step', 'a damaged frame between good ones is reported with crcOk false', [cat(a, broken, b)], [{ frame: hex(a), crcOk: true }, { frame: hex(broken), crcOk: false }, { frame: hex(b), crcOk: true }]],
    ['oversize', 'maxFrameBytes 20: a 48-byte frame is skipped, the next one found', [cat(a, c, b)], [{ frame: hex(a), crcOk: true }, { skipped: c.length, code: 'NDP_ERR_PAYLOAD_TOO_LARGE' }, { frame: hex(b), crcOk: true }], 20],
    ['truncated_at_end', 'the stream ends 10 bytes into a frame', [cat(a, c.subarray(0, 10))], [{ frame: hex(a), crcOk: true }, { skipped: 10, code: 'NDP_ERR_TRUNCATED' }]],
    ['only_garbage', 'no frame at all', [bytes('00112233445566778899')], [{ skipped: 10, code: 'NDP_ERR_BAD_MAGIC' }]],
  ];
  return {
    description: 'The stream decoder (NDP.md §8): chunks fed in order, then end of stream; the events expected, in order.',
    vectors: cases.map(([name, description, chunks, expect, maxFrameBytes]) => ({ name, description, ...(maxFrameBytes !== undefined ? { maxFrameBytes } : {}), chunks: chunks.map(hex), expect })),
  };
}

function splitRamp(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0, n = 1; at < b.length; at += n, n++) out.push(b.subarray(at, at + n));
  return out;
}

function sampleBodyVectors(): object {
  const cases: Array<[string, string, Uint8Array, object]> = [];
  const add = (name: string, description: string, tokens: number[], mask?: number[]): void => {
    const body = encodeSampleBody({ tokens: Int32Array.from(tokens), lossMask: mask === undefined ? undefined : Uint8Array.from(mask) });
    cases.push([name, description, body, { tokens, lossMask: mask ?? tokens.map(() => 1) }]);
  };
  add('no_mask', 'three tokens, every one trained on (no mask flag)', [151_643, 0, -1]);
  add('mask', '10 tokens, the first 3 not trained on: mask bytes 0x1f 0xc0', [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
  add('mask_all_ones', 'a mask of all ones is written as no mask', [5, 6], [1, 1]);
  add('empty', 'zero tokens: the 8-byte header only', []);
  const errors: Array<[string, string, string, string]> = [
    ['shorter_than_header', '7 bytes', '01000000000000', 'NDP_ERR_BAD_BODY'],
    ['count_too_big', 'n = 2 with one token', '010000000000000200000001', 'NDP_ERR_BAD_BODY'],
    ['missing_mask', 'mask flag set, mask byte missing', '010100000000000100000001', 'NDP_ERR_BAD_BODY'],
    ['extra_byte', 'one byte after the tokens', '01000000000000010000000100', 'NDP_ERR_BAD_BODY'],
    ['version_2', 'body version 2', '020000000000000100000001', 'NDP_ERR_UNSUPPORTED_VERSION'],
  ];
  return {
    description: 'Sample bodies (NDP.md §5): hex → tokens and loss mask (one 0/1 per token), or an error code.',
    vectors: [
      ...cases.map(([name, description, body, expect]) => ({ name, description, hex: hex(body), expect })),
      ...errors.map(([name, description, h, code]) => ({ name, description, hex: h, expect: { error: code } })),
    ],
  };
}

/** A SEGMENT payload holding a whole 12-byte body in one fragment. */
function segmentPayload(): Uint8Array {
  const body = encodeSampleBody({ tokens: Int32Array.of(42) });
  const payload = new Uint8Array(40 + body.length);
  writeTransportHeader(payload, 0, { flags: 2, source: 0, session: 1, seq: 0, epoch: 0, position: 0, sample: 0, fragIndex: 0, fragCount: 1, fragOffset: 0, bodyLength: body.length, bodyCrc: crc32(body) });
  payload.set(body, 40);
  return payload;
}

function headerJson(h: TransportHeader): object {
  return { ...h };
}

function segmentVectors(): object {
  const body = encodeSampleBody({ tokens: Int32Array.from([1, 2, -3]) });
  const input: SegmentInput = { body, src: SRC.CODE_REPO, dst: DST.EMBEDDING, session: 0x01020304, seq: 0xfffffffe, epoch: 7, position: 9, sample: 11, source: 2, flags: 4 };
  const datagram = 56;
  const { frames } = segmentSample(input, { datagram });
  const inputJson = { ...input, body: hex(body) };
  const payloadOf = (f: Uint8Array): Uint8Array => f.subarray(6, f.length - 2);
  // Re-frame a modified SEGMENT payload with a correct CRC-16 (so only the transport layer sees the damage).
  const reframe = (f: Uint8Array, edit: (payload: Uint8Array) => void): string => {
    const payload = Uint8Array.from(payloadOf(f));
    edit(payload);
    return hex(frame(f[1]!, f[2]!, f[3]!, payload));
  };
  const setU32 = (at: number, v: number) => (p: Uint8Array): void => new DataView(p.buffer, p.byteOffset).setUint32(at, v);
  const setU16 = (at: number, v: number) => (p: Uint8Array): void => new DataView(p.buffer, p.byteOffset).setUint16(at, v);
  const [f0, f1, f2] = frames as [Uint8Array, Uint8Array, Uint8Array];

  const headers = [
    { name: 'first_fragment', description: 'the payload of the first frame below', payload: hex(payloadOf(f0)), expect: { header: headerJson(readHeaderPlain(payloadOf(f0))), fragment: hex(payloadOf(f0).subarray(40)) } },
    { name: 'short', description: '39 bytes: shorter than the transport header', payload: hex(payloadOf(f0).subarray(0, 39)), expect: { error: 'NDP_ERR_BAD_SEGMENT' } },
    { name: 'version_2', description: 'transport header version 2', payload: hex(Uint8Array.of(2, ...payloadOf(f0).subarray(1))), expect: { error: 'NDP_ERR_UNSUPPORTED_VERSION' } },
    { name: 'frag_count_zero', description: 'fragCount 0', payload: reframePayload(payloadOf(f0), setU16(26, 0)), expect: { error: 'NDP_ERR_BAD_SEGMENT' } },
    { name: 'index_not_below_count', description: 'fragIndex 3 of fragCount 3', payload: reframePayload(payloadOf(f0), setU16(24, 3)), expect: { error: 'NDP_ERR_BAD_SEGMENT' } },
    { name: 'past_body_end', description: 'fragOffset 16 + 8 bytes > bodyLength 20', payload: reframePayload(payloadOf(f0), setU32(28, 16)), expect: { error: 'NDP_ERR_BAD_SEGMENT' } },
  ];

  const f = [hex(f0), hex(f1), hex(f2)];
  const reassembly = [
    { name: 'in_order', frames: f, expect: ['pending', 'pending', 'complete'] },
    { name: 'reverse_order', frames: [f[2], f[1], f[0]], expect: ['pending', 'pending', 'complete'] },
    { name: 'duplicate_fragment', frames: [f[1], f[1], f[0], f[2], f[2]], expect: ['pending', 'duplicate', 'pending', 'complete', 'duplicate'] },
    { name: 'body_crc_mismatch', description: 'fragment 1 payload damaged, frame CRC recomputed: the body CRC-32 catches it', frames: [f[0], reframe(f1, (p) => (p[45]! ^= 1)), f[2]], expect: ['pending', 'pending', 'dropped:body_crc'] },
    { name: 'fragment_mismatch_crc', description: 'fragment 1 names another bodyCrc', frames: [f[0], reframe(f1, setU32(36, 0)), f[2]], expect: ['pending', 'dropped:fragment_mismatch', 'late'] },
    { name: 'fragment_mismatch_count', description: 'fragment 2 says fragIndex 3 of fragCount 4, bodyLength 28 (consistent alone, not with fragment 0)', frames: [f[0], reframe(f2, (p) => { setU16(26, 4)(p); setU32(32, 28)(p); setU32(28, 24)(p); setU16(24, 3)(p); }), f[1]], expect: ['pending', 'dropped:fragment_mismatch', 'late'] },
    { name: 'bad_segment_offset', description: 'fragment 1 claims offset 9 (not index × 8)', frames: [reframe(f1, setU32(28, 9)), f[0]], expect: ['dropped:bad_segment', 'late'] },
  ];
  return {
    description: 'SEGMENT frames (NDP.md §4, §5.1): segmentation of one body, transport header decoding, and reassembly outcomes per arriving frame.',
    segmentation: [{ name: 'three_fragments_seq_wraps', description: '20-byte body, datagram 56 (8-byte fragments), seq starting at 2^32 − 2', datagram, input: inputJson, frames: f }],
    transportHeaders: headers,
    reassembly: reassembly.map((r) => ({ ...r, body: hex(body) })),
  };
}

function reframePayload(payload: Uint8Array, edit: (p: Uint8Array) => void): string {
  const p = Uint8Array.from(payload);
  edit(p);
  return hex(p);
}

function readHeaderPlain(p: Uint8Array): TransportHeader {
  const v = new DataView(p.buffer, p.byteOffset, 40);
  return {
    version: v.getUint8(0), flags: v.getUint8(1), source: v.getUint8(2), session: v.getUint32(4), seq: v.getUint32(8), epoch: v.getUint32(12), position: v.getUint32(16),
    sample: v.getUint32(20), fragIndex: v.getUint16(24), fragCount: v.getUint16(26), fragOffset: v.getUint32(28), bodyLength: v.getUint32(32), bodyCrc: v.getUint32(36),
  };
}

function controlVectors(): object {
  const msg = (name: string, description: string, m: Record<string, unknown>, expectJson: Record<string, unknown> = m): object => ({
    name,
    description,
    hex: hex(frame(SRC.TRAINER, DST.CONTROL, TYP.CONTROL, encode(m))),
    expect: { message: expectJson },
  });
  const raw = (name: string, description: string, payload: Uint8Array, code: string): object => ({ name, description, hex: hex(frame(SRC.TRAINER, DST.CONTROL, TYP.CONTROL, payload)), expect: { error: code } });
  const cookie = ramp(16, 11);
  return {
    description: 'CONTROL frames (NDP.md §6): msgpack maps; binary values are written {"$bin": hex} in `expect`.',
    vectors: [
      msg('heartbeat', 'HEARTBEAT with a time', { t: CONTROL.HEARTBEAT, session: 7, time: 123_456 }),
      msg('credit', 'CREDIT', { t: CONTROL.CREDIT, session: 7, ack: 1000, window: 1024 }),
      msg('nack', 'NACK with two ranges', { t: CONTROL.NACK, session: 7, ranges: [[3, 5], [9, 9]] }),
      msg('cookie', 'COOKIE with a bin value', { t: CONTROL.COOKIE, cookie, lifetimeMs: 10_000 }, { t: CONTROL.COOKIE, cookie: { $bin: hex(cookie) }, lifetimeMs: 10_000 }),
      msg('bye_with_cursor', 'BYE with a nested map', { t: CONTROL.BYE, session: 7, reason: 'done', cursor: { epoch: 1, position: 0 } }),
      msg('unknown_keys_kept', 'unknown keys are ignored by receivers (decoders keep them)', { t: CONTROL.HEARTBEAT, session: 7, future: 'x' }),
      raw('unknown_type', 't = 99 is not in the registry', encode({ t: 99, session: 7 }), 'NDP_ERR_UNKNOWN_CONTROL'),
      raw('not_a_map', 'a msgpack array', encode([8, 7]), 'NDP_ERR_BAD_CONTROL'),
      raw('t_not_a_number', 't is a string', encode({ t: 'HEARTBEAT' }), 'NDP_ERR_BAD_CONTROL'),
      raw('not_msgpack', '0xc1 is never used by msgpack', Uint8Array.of(0xc1), 'NDP_ERR_BAD_CONTROL'),
      raw('empty_payload', 'no bytes', new Uint8Array(0), 'NDP_ERR_BAD_CONTROL'),
    ],
  };
}

/** Every vector file by name, as written to protocol-spec/vectors/. */
export function buildVectors(): Record<string, object> {
  return {
    'frames.json': frameVectors(),
    'stream.json': streamVectors(),
    'sample-body.json': sampleBodyVectors(),
    'segments.json': segmentVectors(),
    'control.json': controlVectors(),
  };
}

export function vectorsDir(): string {
  return fileURLToPath(new URL('../../../protocol-spec/vectors/', import.meta.url));
}

/** The JSON text a vector file holds (one-space indent, final newline). */
export function vectorText(content: object): string {
  return JSON.stringify(content, null, 1) + '\n';
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const [name, content] of Object.entries(buildVectors())) {
    writeFileSync(vectorsDir() + name, vectorText(content));
    process.stdout.write(`wrote protocol-spec/vectors/${name}\n`);
  }
}
