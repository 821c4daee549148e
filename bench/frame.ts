/**
 * Frame encode/decode throughput (frames/s and payload MB/s) for 64 B, 1.2 KB and 64 KB payloads,
 * side by side in one run: the codec as shipped (slicing-by-8 CRC-16), the same codec with the
 * bitwise CRC-16 (baseline: what the CRC would cost done naively), writing into a reused buffer,
 * and the stream decoder reading many frames from one chunk. Ratios are against the baseline of the
 * same operation and size. Run: `npm run build && node dist/bench/frame.js`.
 */
import { loadavg } from 'node:os';
import { crc16Bitwise } from '../src/protocol/crc16.js';
import { decodeFrame, encodeFrame, frameSize, writeFrame } from '../src/protocol/frame.js';
import { DST, SRC, TYP } from '../src/protocol/registry.js';
import { Reassembler } from '../src/protocol/reassembler.js';
import { segmentSample } from '../src/protocol/segmenter.js';
import { StreamDecoder } from '../src/protocol/stream-decoder.js';
import { readTransportHeader } from '../src/protocol/transport-header.js';
import { measure, report, type Row } from './report.js';

const SIZES: Array<[string, number]> = [
  ['64 B', 64],
  ['1.2 KB', 1200],
  ['64 KB', 65_535],
];

/** The baseline codec: the same layout with the bitwise CRC-16. */
function encodeBitwise(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(frameSize(payload.length));
  out.set([0xaa, SRC.TEXT_CORPUS, DST.EMBEDDING, TYP.TOKEN_IDS, payload.length >> 8, payload.length & 0xff]);
  out.set(payload, 6);
  const crc = crc16Bitwise(out.subarray(0, 6 + payload.length));
  out[6 + payload.length] = crc >> 8;
  out[7 + payload.length] = crc & 0xff;
  return out;
}

function decodeBitwise(frame: Uint8Array): boolean {
  const len = (frame[4]! << 8) | frame[5]!;
  return crc16Bitwise(frame.subarray(0, 6 + len)) === ((frame[6 + len]! << 8) | frame[7 + len]!);
}

const rows: Row[] = [];
for (const [label, size] of SIZES) {
  const payload = new Uint8Array(size).map((_, i) => (i * 29) & 0xff);
  const fields = { src: SRC.TEXT_CORPUS, dst: DST.EMBEDDING, typ: TYP.TOKEN_IDS, payload };
  const frame = encodeFrame(fields);
  const reused = new Uint8Array(frame.length);
  // Enough frames per batch that one call is long enough to time well.
  const batch = Math.max(1, Math.floor((1 << 20) / frame.length));
  const many = new Uint8Array(frame.length * batch);
  for (let i = 0; i < batch; i++) many.set(frame, i * frame.length);
  const decoder = new StreamDecoder();
  const options = { rounds: 5, minMs: 150, warmupMs: 150 };
  const ops: Array<[string, string, () => number]> = [
    ['encode', 'bitwise CRC (baseline)', () => { for (let i = 0; i < batch; i++) encodeBitwise(payload); return batch; }],
    ['encode', 'encodeFrame (new array)', () => { for (let i = 0; i < batch; i++) encodeFrame(fields); return batch; }],
    ['encode', 'writeFrame (reused buffer)', () => { for (let i = 0; i < batch; i++) writeFrame(reused, 0, fields); return batch; }],
    ['decode', 'bitwise CRC (baseline)', () => { for (let i = 0; i < batch; i++) decodeBitwise(frame); return batch; }],
    ['decode', 'decodeFrame', () => { for (let i = 0; i < batch; i++) decodeFrame(frame); return batch; }],
    ['decode', `StreamDecoder (${batch} frames per chunk)`, () => decoder.push(many).length],
  ];
  const baseline: Record<string, number> = {};
  for (const [op, impl, fn] of ops) {
    const m = measure(fn, options);
    baseline[op] ??= m.median;
    rows.push({
      payload: label,
      op,
      implementation: impl,
      'frames/s': m.median,
      'payload MB/s': (m.median * size) / 1e6,
      'range frames/s': `${Math.round(m.min).toLocaleString('en-US')}–${Math.round(m.max).toLocaleString('en-US')}`,
      'frames per CPU-second': m.cpuMedian,
      'vs baseline': `${(m.median / baseline[op]!).toFixed(1)}×`,
    });
  }
}
// A whole sample through the transport layer: segment (with the body CRC-32), then decode every
// frame, read its transport header and reassemble (with the body CRC-32 check).
const body = new Uint8Array(64 * 1024).map((_, i) => (i * 31) & 0xff);
let position = 0;
const reassembler = new Reassembler({ rememberFinished: 0 });
for (const datagram of [1472, 65_507]) {
  const m = measure(() => {
    const { frames } = segmentSample({ body, src: 1, dst: 1, session: 1, seq: 0, epoch: 0, position: position++, sample: 0, source: 0 }, { datagram });
    for (const f of frames) {
      const { header, fragment } = readTransportHeader(decodeFrame(f).payload);
      reassembler.accept(header, fragment);
    }
    return 1;
  }, { rounds: 5, minMs: 150, warmupMs: 150 });
  rows.push({
    payload: `64 KiB sample, datagram ${datagram}`,
    op: 'segment + reassemble',
    implementation: 'segmentSample → decodeFrame → Reassembler',
    'frames/s': m.median * Math.ceil(body.length / (datagram - 48)),
    'payload MB/s': (m.median * body.length) / 1e6,
    'range frames/s': '',
    'frames per CPU-second': m.cpuMedian * Math.ceil(body.length / (datagram - 48)),
    'vs baseline': '',
  });
}
if (reassembler.stats.samplesDelivered !== position) throw new Error('a sample was not reassembled');

report('frame', rows, { rounds: 5, minMsPerRound: 150, loadAverage: loadavg() }, `Frame encode/decode (one core; median of 5 rounds; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')})`);
