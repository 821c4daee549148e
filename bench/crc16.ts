/**
 * CRC-16/CCITT-FALSE throughput on one 64 MiB buffer, side by side in one run: the bitwise definition
 * (baseline), one table (a byte per step), slicing-by-8 (src/protocol/crc16.ts, what the data path
 * uses, and the same loop inlined to show call overhead), slicing-by-8 reading 32-bit words,
 * slicing-by-16, and Node's native zlib.crc32 (CRC-32, for reference). Ratios are against the
 * bitwise baseline. Run: `npm run build && node dist/bench/crc16.js [--mib N]`.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { crc32 } from 'node:zlib';
import { CRC16_INIT, crc16, crc16Bitwise } from '../src/protocol/crc16.js';
import { measure, report, type Row } from './report.js';

const POLY = 0x1021;

function tables(count: number): Uint16Array[] {
  const t0 = new Uint16Array(256);
  for (let b = 0; b < 256; b++) {
    let c = b << 8;
    for (let i = 0; i < 8; i++) c = c & 0x8000 ? ((c << 1) ^ POLY) & 0xffff : (c << 1) & 0xffff;
    t0[b] = c;
  }
  const out = [t0];
  for (let k = 1; k < count; k++) {
    const prev = out[k - 1]!;
    const next = new Uint16Array(256);
    for (let b = 0; b < 256; b++) next[b] = ((prev[b]! << 8) & 0xffff) ^ t0[prev[b]! >> 8]!;
    out.push(next);
  }
  return out;
}

const T = tables(16) as [Uint16Array, ...Uint16Array[]];
const T0 = T[0];

function crc16OneTable(bytes: Uint8Array): number {
  let crc = CRC16_INIT;
  for (let i = 0; i < bytes.length; i++) crc = ((crc << 8) & 0xffff) ^ T0[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  return crc;
}

const [S0, S1, S2, S3, S4, S5, S6, S7, S8, S9, S10, S11, S12, S13, S14, S15] = T as [
  Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array,
  Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array,
];

const [R0, R1, R2, R3, R4, R5, R6, R7] = T as [Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array, Uint16Array];

/** Slicing-by-8 with eight byte loads per step: the same loop as src/protocol/crc16.ts, inlined here. */
function crc16Slicing8Bytes(bytes: Uint8Array): number {
  let crc = CRC16_INIT;
  let i = 0;
  const end8 = bytes.length - (bytes.length & 7);
  while (i < end8) {
    crc =
      R7[((crc >> 8) ^ bytes[i]!) & 0xff]! ^ R6[(crc ^ bytes[i + 1]!) & 0xff]! ^ R5[bytes[i + 2]!]! ^ R4[bytes[i + 3]!]! ^
      R3[bytes[i + 4]!]! ^ R2[bytes[i + 5]!]! ^ R1[bytes[i + 6]!]! ^ R0[bytes[i + 7]!]!;
    i += 8;
  }
  while (i < bytes.length) crc = ((crc << 8) & 0xffff) ^ R0[((crc >> 8) ^ bytes[i++]!) & 0xff]!;
  return crc;
}

/** Slicing-by-8 reading two aligned little-endian 32-bit words per step (a candidate, not shipped). */
function crc16Slicing8Words(bytes: Uint8Array): number {
  let crc = CRC16_INIT;
  let i = 0;
  while (i < bytes.length && ((bytes.byteOffset + i) & 3) !== 0) crc = ((crc << 8) & 0xffff) ^ R0[((crc >> 8) ^ bytes[i++]!) & 0xff]!;
  const wordCount = ((bytes.length - i) >>> 3) << 1;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset + i, wordCount);
  for (let w = 0; w < wordCount; w += 2) {
    const a = words[w]!;
    const b = words[w + 1]!;
    crc =
      R7[((crc >> 8) ^ a) & 0xff]! ^ R6[(crc ^ (a >>> 8)) & 0xff]! ^ R5[(a >>> 16) & 0xff]! ^ R4[a >>> 24]! ^
      R3[b & 0xff]! ^ R2[(b >>> 8) & 0xff]! ^ R1[(b >>> 16) & 0xff]! ^ R0[b >>> 24]!;
  }
  i += wordCount * 4;
  while (i < bytes.length) crc = ((crc << 8) & 0xffff) ^ R0[((crc >> 8) ^ bytes[i++]!) & 0xff]!;
  return crc;
}

function crc16Slicing16(bytes: Uint8Array): number {
  let crc = CRC16_INIT;
  let i = 0;
  const end16 = bytes.length - (bytes.length & 15);
  while (i < end16) {
    crc =
      S15[((crc >> 8) ^ bytes[i]!) & 0xff]! ^ S14[(crc ^ bytes[i + 1]!) & 0xff]! ^
      S13[bytes[i + 2]!]! ^ S12[bytes[i + 3]!]! ^ S11[bytes[i + 4]!]! ^ S10[bytes[i + 5]!]! ^
      S9[bytes[i + 6]!]! ^ S8[bytes[i + 7]!]! ^ S7[bytes[i + 8]!]! ^ S6[bytes[i + 9]!]! ^
      S5[bytes[i + 10]!]! ^ S4[bytes[i + 11]!]! ^ S3[bytes[i + 12]!]! ^ S2[bytes[i + 13]!]! ^
      S1[bytes[i + 14]!]! ^ S0[bytes[i + 15]!]!;
    i += 16;
  }
  while (i < bytes.length) crc = ((crc << 8) & 0xffff) ^ S0[((crc >> 8) ^ bytes[i++]!) & 0xff]!;
  return crc;
}

const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' } } });
const size = Number(values.mib) * 1024 * 1024;
const data = new Uint8Array(size);
for (let i = 0, s = 1; i < size; i++) {
  s = (s * 1103515245 + 12345) >>> 0;
  data[i] = s >>> 24;
}

const expected = crc16(data);
const impls: Array<[string, (b: Uint8Array) => number, boolean]> = [
  ['bitwise (baseline)', crc16Bitwise, true],
  ['one table', crc16OneTable, true],
  ['slicing-by-8 (src/protocol/crc16.ts)', (b) => crc16(b), true],
  ['slicing-by-8, same loop inlined here', crc16Slicing8Bytes, true],
  ['slicing-by-8, 32-bit word loads', crc16Slicing8Words, true],
  ['slicing-by-16', crc16Slicing16, true],
  ['zlib.crc32 (CRC-32, native, reference)', (b) => crc32(b), false],
];

const rows: Row[] = [];
let baseline = 0;
let cpuBaseline = 0;
for (const [name, fn, isCrc16] of impls) {
  if (isCrc16 && fn(data) !== expected) throw new Error(`${name} disagrees with crc16`);
  // One pass over 64 MiB is a round; the bitwise baseline is slow, so fewer rounds for it.
  const m = measure(() => {
    fn(data);
    return data.length;
  }, { rounds: name.startsWith('bitwise') ? 1 : 5, minMs: 0, warmupMs: name.startsWith('bitwise') ? 0 : 300 });
  if (baseline === 0) baseline = m.median;
  if (cpuBaseline === 0) cpuBaseline = m.cpuMedian;
  rows.push({
    implementation: name,
    'MB/s median': m.median / 1e6,
    'MB/s min': m.min / 1e6,
    'MB/s max': m.max / 1e6,
    'MB/s per CPU-second': m.cpuMedian / 1e6,
    'vs bitwise': `${(m.median / baseline).toFixed(1)}×`,
    'vs bitwise (CPU)': `${(m.cpuMedian / cpuBaseline).toFixed(1)}×`,
  });
}
report('crc16', rows, { bytes: size, rounds: 'one pass over the buffer per round; 5 rounds (bitwise: 1)', loadAverage: loadavg() }, `CRC throughput on ${values.mib} MiB (one core; wall-clock and per CPU-second of this process; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')})`);
