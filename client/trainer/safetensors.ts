/**
 * The safetensors format (huggingface/safetensors): an 8-byte little-endian header length, a JSON
 * header `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {…} }`, then the raw
 * little-endian tensor bytes. Read converts F32/F16/BF16/F64 to float32; write emits F32 only (the
 * adapter), with names sorted as the Rust writer does.
 */
import { NdpError } from '../../src/protocol/errors.js';

export interface NamedTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Refuses headers above this size (defaults to 100 MB, the limit of the reference implementation). */
export const MAX_SAFETENSORS_HEADER = 100_000_000;

function bad(message: string): NdpError {
  return new NdpError('NDP_ERR_BAD_SAFETENSORS', message);
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

const bf16Bits = new Uint32Array(1);
const bf16Float = new Float32Array(bf16Bits.buffer);

/** Parses a whole safetensors file; `filter` selects the tensor names to convert (all by default). */
export function readSafetensors(bytes: Uint8Array, filter: (name: string) => boolean = () => true): Map<string, NamedTensor> {
  if (bytes.byteLength < 8) throw bad(`file of ${bytes.byteLength} bytes is shorter than its header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_SAFETENSORS_HEADER || 8 + headerLength > bytes.byteLength) throw bad(`header length ${headerLength} exceeds the file or the ${MAX_SAFETENSORS_HEADER}-byte limit`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as typeof header;
  } catch (err) {
    throw bad(`header is not JSON: ${(err as Error).message}`);
  }
  const dataStart = 8 + headerLength;
  const out = new Map<string, NamedTensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__' || !filter(name)) continue;
    const [begin, end] = info.data_offsets;
    const count = info.shape.reduce((a, b) => a * b, 1);
    if (dataStart + end > bytes.byteLength || begin > end) throw bad(`tensor ${name}: offsets [${begin}, ${end}] outside the file`);
    const raw = bytes.subarray(dataStart + begin, dataStart + end);
    const rv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const data = new Float32Array(count);
    const width = { F32: 4, F16: 2, BF16: 2, F64: 8 }[info.dtype];
    if (width === undefined) throw bad(`tensor ${name}: dtype ${info.dtype} is not a float type this reader converts`);
    if (raw.byteLength !== count * width) throw bad(`tensor ${name}: ${raw.byteLength} bytes for shape [${info.shape.join(',')}] of ${info.dtype}`);
    for (let i = 0; i < count; i++) {
      if (info.dtype === 'F32') data[i] = rv.getFloat32(i * 4, true);
      else if (info.dtype === 'F64') data[i] = rv.getFloat64(i * 8, true);
      else if (info.dtype === 'BF16') {
        // bfloat16 is the top half of a float32.
        bf16Bits[0] = rv.getUint16(i * 2, true) << 16;
        data[i] = bf16Float[0] as number;
      } else data[i] = halfToFloat(rv.getUint16(i * 2, true));
    }
    out.set(name, { shape: info.shape, data });
  }
  return out;
}

/** Serializes float32 tensors (names sorted) with optional string metadata. */
export function writeSafetensors(tensors: ReadonlyMap<string, NamedTensor>, metadata?: Record<string, string>): Uint8Array {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name) as NamedTensor;
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  // The format asks for the data to start 8-byte aligned; pad the header with spaces.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const name of names) {
    const t = tensors.get(name) as NamedTensor;
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}
