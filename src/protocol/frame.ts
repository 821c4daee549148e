/**
 * The v1 frame (NDP.md §3), byte for byte the seed's:
 * `0xAA | SRC | DST | TYP | LEN (u16 BE) | payload (LEN bytes) | CRC-16 (BE)`,
 * the CRC taken over every byte from the magic through the payload.
 * A CRC mismatch is a result (`crcOk: false`), not an exception: callers decide its fate.
 */
import { crc16 } from './crc16.js';
import { NdpError } from './errors.js';
import { FRAME_CRC_BYTES, FRAME_HEADER_BYTES, FRAME_OVERHEAD, MAGIC, MAX_PAYLOAD } from './registry.js';

export interface FrameFields {
  readonly src: number;
  readonly dst: number;
  readonly typ: number;
  readonly payload: Uint8Array;
}

export interface DecodedFrame extends FrameFields {
  readonly len: number;
  /** The CRC-16 carried by the frame. */
  readonly crc: number;
  /** Whether `crc` equals the CRC-16 computed over the received bytes. */
  readonly crcOk: boolean;
}

/** Total bytes of a frame carrying `payloadLength` payload bytes. */
export function frameSize(payloadLength: number): number {
  return payloadLength + FRAME_OVERHEAD;
}

function checkByte(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 255) throw new RangeError(`${name} must be an integer 0..255, got ${value}`);
}

/**
 * Writes one frame into `out` at `offset` and returns the offset after it. The payload may already
 * sit at `offset + 6` in `out` (zero-copy building: pass `payload` as that view; the copy is skipped).
 */
export function writeFrame(out: Uint8Array, offset: number, fields: FrameFields): number {
  const { src, dst, typ, payload } = fields;
  checkByte('src', src);
  checkByte('dst', dst);
  checkByte('typ', typ);
  if (payload.length > MAX_PAYLOAD) {
    throw new NdpError('NDP_ERR_PAYLOAD_TOO_LARGE', `payload of ${payload.length} bytes exceeds LEN's limit of ${MAX_PAYLOAD}`);
  }
  const end = offset + frameSize(payload.length);
  if (end > out.length) throw new RangeError(`frame of ${end - offset} bytes does not fit at offset ${offset} of ${out.length}`);
  out[offset] = MAGIC;
  out[offset + 1] = src;
  out[offset + 2] = dst;
  out[offset + 3] = typ;
  out[offset + 4] = payload.length >> 8;
  out[offset + 5] = payload.length & 0xff;
  const payloadAt = offset + FRAME_HEADER_BYTES;
  if (!(payload.buffer === out.buffer && payload.byteOffset === out.byteOffset + payloadAt)) out.set(payload, payloadAt);
  const crcAt = payloadAt + payload.length;
  const crc = crc16(out, undefined, offset, crcAt);
  out[crcAt] = crc >> 8;
  out[crcAt + 1] = crc & 0xff;
  return end;
}

/** Encodes one frame into a new array. */
export function encodeFrame(fields: FrameFields): Uint8Array {
  const out = new Uint8Array(frameSize(fields.payload.length));
  writeFrame(out, 0, fields);
  return out;
}

/**
 * Reads the frame that starts at `offset` of `bytes`, if it is whole. Returns the frame and its end
 * offset, `undefined` when more bytes are needed, and throws NDP_ERR_BAD_MAGIC when `bytes[offset]`
 * is not the magic. The payload is a view into `bytes` (no copy).
 */
export function readFrameAt(bytes: Uint8Array, offset = 0): { frame: DecodedFrame; end: number } | undefined {
  if (offset >= bytes.length) return undefined;
  if (bytes[offset] !== MAGIC) {
    throw new NdpError('NDP_ERR_BAD_MAGIC', `expected magic 0xaa at offset ${offset}, found 0x${bytes[offset]!.toString(16).padStart(2, '0')}`);
  }
  if (bytes.length - offset < FRAME_HEADER_BYTES) return undefined;
  const len = (bytes[offset + 4]! << 8) | bytes[offset + 5]!;
  const crcAt = offset + FRAME_HEADER_BYTES + len;
  const end = crcAt + FRAME_CRC_BYTES;
  if (end > bytes.length) return undefined;
  const crc = (bytes[crcAt]! << 8) | bytes[crcAt + 1]!;
  const frame: DecodedFrame = {
    src: bytes[offset + 1]!,
    dst: bytes[offset + 2]!,
    typ: bytes[offset + 3]!,
    len,
    payload: bytes.subarray(offset + FRAME_HEADER_BYTES, crcAt),
    crc,
    crcOk: crc16(bytes, undefined, offset, crcAt) === crc,
  };
  return { frame, end };
}

/**
 * Decodes `bytes` as exactly one whole frame (a UDP datagram, a file record). Bad magic, fewer bytes
 * than LEN announces, and bytes after the frame throw an NdpError with its code; a CRC mismatch does
 * not throw, it sets `crcOk: false`. "Need more bytes" belongs to the stream decoder.
 */
export function decodeFrame(bytes: Uint8Array): DecodedFrame {
  const read = readFrameAt(bytes, 0);
  if (read === undefined) {
    const announced = bytes.length >= FRAME_HEADER_BYTES ? ` (LEN announces ${frameSize((bytes[4]! << 8) | bytes[5]!)})` : '';
    throw new NdpError('NDP_ERR_TRUNCATED', `frame truncated: ${bytes.length} bytes${announced}`);
  }
  if (read.end !== bytes.length) {
    throw new NdpError('NDP_ERR_TRAILING_BYTES', `${bytes.length - read.end} bytes after a whole frame of ${read.end}`);
  }
  return read.frame;
}
