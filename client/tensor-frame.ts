/**
 * TENSOR frames of the worker channel (NDP.md §11.2): a tensor header, then one fragment of a named
 * tensor. Header integers big-endian; elements in the byte order the LITTLE_ENDIAN flag names. The
 * trainer and worker share a host, so the trainer sends host order and the worker uses the bytes
 * without converting them.
 *
 * | off        | size   | field |
 * | ---------- | ------ | ----- |
 * | 0          | 1      | version (1) |
 * | 1          | 1      | flags: bit 0 LITTLE_ENDIAN |
 * | 2          | 1      | dtype: TYP code of the element type (TOKEN_IDS = int32, FLOAT32, FLOAT16, BFLOAT16) |
 * | 3          | 1      | ndim (0..8) |
 * | 4          | 4      | batch id |
 * | 8          | 4      | byteLength of the whole tensor |
 * | 12         | 4      | fragOffset |
 * | 16         | 4·ndim | shape |
 * | 16+4·ndim  | 1      | nameLength |
 * | 17+4·ndim  | n      | name (UTF-8) |
 * | …          | rest   | fragment bytes |
 */
import { endianness } from 'node:os';
import { NdpError } from '../src/protocol/errors.js';
import { frameSize, writeFrame } from '../src/protocol/frame.js';
import { DST, FRAME_HEADER_BYTES, MAX_PAYLOAD, SRC, TYP } from '../src/protocol/registry.js';

export const TENSOR_VERSION = 1;
export const TENSOR_FLAG_LITTLE_ENDIAN = 0x01;
export const TENSOR_FIXED_BYTES = 16;
export const TENSOR_MAX_NDIM = 8;
const HOST_LITTLE_ENDIAN = endianness() === 'LE';

/** A named tensor to send, in host byte order: int32 (dtype TOKEN_IDS: batches) or float32 (dtype FLOAT32: base weights). */
export interface NamedTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Int32Array | Float32Array;
}

/** Bytes of the tensor header for `ndim` dimensions and a name of `nameBytes` UTF-8 bytes. */
export function tensorHeaderSize(ndim: number, nameBytes: number): number {
  return TENSOR_FIXED_BYTES + 4 * ndim + 1 + nameBytes;
}

/** Bytes of all TENSOR frames that carry `tensor` with at most `maxPayload` bytes per frame payload. */
export function tensorFramesSize(tensor: NamedTensor, maxPayload: number = MAX_PAYLOAD): number {
  const header = tensorHeaderSize(tensor.shape.length, Buffer.byteLength(tensor.name));
  const room = maxPayload - header;
  const frames = Math.max(1, Math.ceil(tensor.data.byteLength / room));
  return frames * frameSize(header) + tensor.data.byteLength;
}

/**
 * Writes `tensor` as consecutive TENSOR frames of batch `batchId` into `out` at `offset`; returns
 * the offset after them. Each frame payload is at most `maxPayload` bytes (default 65,535). The
 * element bytes are copied straight from the typed array's memory into the frame.
 */
export function writeTensorFrames(out: Uint8Array, offset: number, batchId: number, tensor: NamedTensor, maxPayload: number = MAX_PAYLOAD): number {
  const name = Buffer.from(tensor.name, 'utf8');
  const ndim = tensor.shape.length;
  if (name.length > 255) throw new NdpError('NDP_ERR_BAD_TENSOR', `tensor name of ${name.length} bytes exceeds 255`);
  if (ndim > TENSOR_MAX_NDIM) throw new NdpError('NDP_ERR_BAD_TENSOR', `tensor of ${ndim} dimensions exceeds ${TENSOR_MAX_NDIM}`);
  // A dimension is a uint32 on the wire: anything else would be silently wrapped by setUint32.
  const badDim = tensor.shape.find((dim) => !Number.isInteger(dim) || dim < 0 || dim > 0xffff_ffff);
  if (badDim !== undefined) throw new NdpError('NDP_ERR_BAD_TENSOR', `tensor '${tensor.name}' has dimension ${badDim}; dimensions are integers 0..2^32-1`);
  const elements = tensor.shape.reduce((a, b) => a * b, 1);
  if (elements !== tensor.data.length) {
    throw new NdpError('NDP_ERR_BAD_TENSOR', `tensor '${tensor.name}' of shape [${tensor.shape.join(', ')}] needs ${elements} elements, has ${tensor.data.length}`);
  }
  const headerBytes = tensorHeaderSize(ndim, name.length);
  const room = maxPayload - headerBytes;
  if (room <= 0) throw new NdpError('NDP_ERR_BAD_TENSOR', `tensor header of ${headerBytes} bytes leaves no room in a ${maxPayload}-byte payload`);
  const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  let fragOffset = 0;
  let at = offset;
  do {
    const part = Math.min(room, bytes.length - fragOffset);
    const payloadAt = at + FRAME_HEADER_BYTES;
    const view = new DataView(out.buffer, out.byteOffset + payloadAt, headerBytes);
    view.setUint8(0, TENSOR_VERSION);
    view.setUint8(1, HOST_LITTLE_ENDIAN ? TENSOR_FLAG_LITTLE_ENDIAN : 0);
    view.setUint8(2, tensor.data instanceof Float32Array ? TYP.FLOAT32 : TYP.TOKEN_IDS);
    view.setUint8(3, ndim);
    view.setUint32(4, batchId);
    view.setUint32(8, bytes.length);
    view.setUint32(12, fragOffset);
    tensor.shape.forEach((dim, i) => view.setUint32(16 + 4 * i, dim));
    view.setUint8(16 + 4 * ndim, name.length);
    out.set(name, payloadAt + 17 + 4 * ndim);
    out.set(bytes.subarray(fragOffset, fragOffset + part), payloadAt + headerBytes);
    // The payload already sits in place: writeFrame only adds the frame header and the CRC.
    at = writeFrame(out, at, { src: SRC.TRAINER, dst: DST.WORKER, typ: TYP.TENSOR, payload: out.subarray(payloadAt, payloadAt + headerBytes + part) });
    fragOffset += part;
  } while (fragOffset < bytes.length);
  return at;
}
