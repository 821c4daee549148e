/**
 * The sample body (NDP.md §5): what one training sample is on the wire and in a file, before it is
 * cut into fragments. Big-endian throughout.
 *
 * | off | size      | field |
 * | --- | --------- | ----- |
 * | 0   | 1         | body version (1) |
 * | 1   | 1         | flags: bit 0 = a loss mask follows the tokens |
 * | 2   | 2         | reserved, 0 |
 * | 4   | 4         | token count n |
 * | 8   | 4n        | token ids, int32 BE (the seed's TOKEN_IDS encoding) |
 * | 8+4n| ceil(n/8) | loss mask, if flagged: bit i = byte[i>>3] >> (7 - (i&7)) & 1; 1 = trained on |
 *
 * Without a mask every token is trained on. `labels` for a trainer are the tokens where the mask is 1
 * and -100 elsewhere.
 */
import { NdpError } from './errors.js';

export const BODY_VERSION = 1;
export const BODY_HEADER_BYTES = 8;
const FLAG_HAS_MASK = 1;

export interface SampleTokens {
  readonly tokens: Int32Array;
  /** One byte per token, 1 = trained on, 0 = not. Absent: every token is trained on. */
  readonly lossMask?: Uint8Array | undefined;
}

export function sampleBodySize(tokenCount: number, hasMask: boolean): number {
  return BODY_HEADER_BYTES + 4 * tokenCount + (hasMask ? Math.ceil(tokenCount / 8) : 0);
}

/** Encodes a sample body. A mask of all ones is written as "no mask" (same meaning, fewer bytes). */
export function encodeSampleBody(sample: SampleTokens): Uint8Array {
  const n = sample.tokens.length;
  const mask = sample.lossMask !== undefined && sample.lossMask.some((m) => m === 0) ? sample.lossMask : undefined;
  if (mask !== undefined && mask.length !== n) throw new RangeError(`loss mask has ${mask.length} entries for ${n} tokens`);
  const out = new Uint8Array(sampleBodySize(n, mask !== undefined));
  const view = new DataView(out.buffer);
  view.setUint8(0, BODY_VERSION);
  view.setUint8(1, mask !== undefined ? FLAG_HAS_MASK : 0);
  view.setUint32(4, n);
  for (let i = 0; i < n; i++) view.setInt32(BODY_HEADER_BYTES + 4 * i, sample.tokens[i]!);
  if (mask !== undefined) {
    const maskAt = BODY_HEADER_BYTES + 4 * n;
    for (let i = 0; i < n; i++) if (mask[i]) out[maskAt + (i >> 3)]! |= 0x80 >> (i & 7);
  }
  return out;
}

/**
 * Checks a whole sample body's header against its length without decoding the tokens (what a server
 * needs before forwarding a stored body): NDP_ERR_BAD_BODY when the length does not match the token
 * count and mask flag, NDP_ERR_UNSUPPORTED_VERSION for another body version. Returns the layout.
 */
export function checkSampleBody(body: Uint8Array): { tokenCount: number; hasMask: boolean } {
  if (body.length < BODY_HEADER_BYTES) throw new NdpError('NDP_ERR_BAD_BODY', `sample body of ${body.length} bytes is shorter than its 8-byte header`);
  if (body[0] !== BODY_VERSION) throw new NdpError('NDP_ERR_UNSUPPORTED_VERSION', `sample body version ${body[0]}, this implementation speaks ${BODY_VERSION}`);
  const hasMask = (body[1]! & FLAG_HAS_MASK) !== 0;
  const n = ((body[4]! << 24) | (body[5]! << 16) | (body[6]! << 8) | body[7]!) >>> 0;
  if (body.length !== sampleBodySize(n, hasMask)) {
    throw new NdpError('NDP_ERR_BAD_BODY', `sample body of ${body.length} bytes cannot hold ${n} tokens${hasMask ? ' and a loss mask' : ''} (needs ${sampleBodySize(n, hasMask)})`);
  }
  return { tokenCount: n, hasMask };
}

/** Decodes a whole sample body; the errors of checkSampleBody. */
export function decodeSampleBody(body: Uint8Array): { tokens: Int32Array; lossMask: Uint8Array } {
  const { tokenCount: n, hasMask } = checkSampleBody(body);
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const tokens = new Int32Array(n);
  for (let i = 0; i < n; i++) tokens[i] = view.getInt32(BODY_HEADER_BYTES + 4 * i);
  const lossMask = new Uint8Array(n);
  if (hasMask) {
    const maskAt = BODY_HEADER_BYTES + 4 * n;
    for (let i = 0; i < n; i++) lossMask[i] = (body[maskAt + (i >> 3)]! >> (7 - (i & 7))) & 1;
  } else {
    lossMask.fill(1);
  }
  return { tokens, lossMask };
}
