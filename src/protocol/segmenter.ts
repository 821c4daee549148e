/**
 * Segmentation (NDP.md §5.1): cuts one encoded sample body (§5) into SEGMENT frames (§3, TYP
 * SEGMENT) whose payload is a transport header (§4) followed by one fragment of the body.
 *
 * API (no needless copies: every frame is written once, into one buffer, and handed out as a view):
 *
 * - `segmentSample(input, { datagram })` → `{ buffer, frames, nextSeq }`: allocates one buffer that
 *   holds every frame back to back; `frames[i]` is the view of fragment i (send each as one UDP
 *   datagram, or `buffer` as one WebSocket message holding them all).
 * - `writeSegments(out, offset, input, datagram)`: the same into a caller's buffer (sized with
 *   `segmentedSize`), e.g. to pack several samples into one WebSocket message.
 * - `writeSegment(out, offset, input, fragIndex, datagram)`: one fragment only, e.g. to retransmit
 *   fragment i after a NACK (set `flags: SEGMENT_FLAG.RETRANSMIT`; its seq is `input.seq + i`, the
 *   seq it was first sent with).
 *
 * Fragment i carries body bytes `[i·F, min((i+1)·F, bodyLength))` with `F = fragmentBytes(datagram)`
 * = datagram − 8 (frame) − 40 (transport header), and seq `(input.seq + i) mod 2^32`.
 * LAST_FRAGMENT is set on the last fragment; the body CRC-32 (zlib `crc32`) is computed once per
 * sample unless the caller passes it (a server may keep it next to the stored body).
 */
import { crc32 } from 'node:zlib';
import { NdpError } from './errors.js';
import { writeFrame } from './frame.js';
import { FRAME_HEADER_BYTES, FRAME_OVERHEAD, MAX_PAYLOAD, SEGMENT_FLAG, TYP } from './registry.js';
import { TRANSPORT_HEADER_BYTES, writeTransportHeader } from './transport-header.js';

/** Default largest frame: a 1500-byte Ethernet MTU minus 20 bytes of IPv4 and 8 of UDP header. */
export const DEFAULT_DATAGRAM = 1472;
/** Largest UDP payload over IPv4 (65,535 − 20 − 8). */
export const MAX_UDP_DATAGRAM = 65_507;
/** Largest frame LEN allows (65,535 payload bytes + 8): the limit on WebSocket. */
export const MAX_FRAME_BYTES = MAX_PAYLOAD + FRAME_OVERHEAD;
/** Smallest frame that still carries one body byte: 8 (frame) + 40 (transport header) + 1. */
export const MIN_DATAGRAM = FRAME_OVERHEAD + TRANSPORT_HEADER_BYTES + 1;
/** fragCount is a u16: a body needs at most this many fragments. */
export const MAX_FRAGMENTS = 0xffff;

/** Everything a SEGMENT frame says about its sample, besides the fragment itself. */
export interface SegmentInput {
  /** The encoded sample body (NDP.md §5); at least one byte. */
  readonly body: Uint8Array;
  /** Frame SRC: the sample's source kind (TEXT_CORPUS, CODE_REPO, …). */
  readonly src: number;
  /** Frame DST: where the receiver routes the sample (EMBEDDING by default in a session). */
  readonly dst: number;
  readonly session: number;
  /** Seq of the first fragment; fragment i gets `(seq + i) mod 2^32`. */
  readonly seq: number;
  readonly epoch: number;
  readonly position: number;
  readonly sample: number;
  /** Index of the sample's source in the session's source list (0..255). */
  readonly source: number;
  /** RETRANSMIT and/or EVAL; LAST_FRAGMENT is managed by the segmenter. Defaults to 0. */
  readonly flags?: number;
  /** CRC-32 of `body` if the caller already has it; computed otherwise. */
  readonly bodyCrc?: number;
}

export interface SegmentOptions {
  /** Largest frame in bytes, MIN_DATAGRAM..MAX_FRAME_BYTES. Defaults to DEFAULT_DATAGRAM (1472). */
  readonly datagram: number;
}

export interface Segmented {
  /** Every frame of the sample, back to back. */
  readonly buffer: Uint8Array;
  /** View of each frame inside `buffer`, in fragment order. */
  readonly frames: Uint8Array[];
  /** The seq after the last fragment: the next sample's first seq. */
  readonly nextSeq: number;
}

function checkDatagram(datagram: number): void {
  if (!Number.isInteger(datagram) || datagram < MIN_DATAGRAM || datagram > MAX_FRAME_BYTES) {
    throw new RangeError(`datagram must be an integer ${MIN_DATAGRAM}..${MAX_FRAME_BYTES}, got ${datagram}`);
  }
}

/** Body bytes per fragment (F of NDP.md §5.1) for frames of at most `datagram` bytes. */
export function fragmentBytes(datagram: number = DEFAULT_DATAGRAM): number {
  checkDatagram(datagram);
  return datagram - FRAME_OVERHEAD - TRANSPORT_HEADER_BYTES;
}

/**
 * Fragments a body of `bodyLength` bytes needs. Throws NDP_ERR_PAYLOAD_TOO_LARGE when that exceeds
 * the u16 fragCount (MAX_FRAGMENTS), RangeError for an empty body.
 */
export function fragmentCount(bodyLength: number, datagram: number = DEFAULT_DATAGRAM): number {
  const f = fragmentBytes(datagram);
  if (!Number.isInteger(bodyLength) || bodyLength < 1 || bodyLength > 0xffffffff) throw new RangeError(`body length must be 1..2^32-1 bytes, got ${bodyLength}`);
  const count = Math.ceil(bodyLength / f);
  if (count > MAX_FRAGMENTS) {
    throw new NdpError('NDP_ERR_PAYLOAD_TOO_LARGE', `sample body of ${bodyLength} bytes needs ${count} fragments of ${f} bytes; fragCount allows ${MAX_FRAGMENTS}`);
  }
  return count;
}

/** Bytes of all the frames of a body of `bodyLength` bytes (what `writeSegments` needs). */
export function segmentedSize(bodyLength: number, datagram: number = DEFAULT_DATAGRAM): number {
  return fragmentCount(bodyLength, datagram) * (FRAME_OVERHEAD + TRANSPORT_HEADER_BYTES) + bodyLength;
}

function checkInput(input: SegmentInput): void {
  for (const [name, value, max] of [
    ['session', input.session, 0xffffffff],
    ['seq', input.seq, 0xffffffff],
    ['epoch', input.epoch, 0xffffffff],
    ['position', input.position, 0xffffffff],
    ['sample', input.sample, 0xffffffff],
    ['source', input.source, 0xff],
    ['flags', input.flags ?? 0, 0xff],
  ] as const) {
    if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`${name} must be an integer 0..${max}, got ${value}`);
  }
}

/**
 * Writes fragment `fragIndex` of `input.body` as one SEGMENT frame at `offset` of `out` and returns
 * the offset after it. The body bytes are copied once, straight to their place in the frame.
 */
export function writeSegment(out: Uint8Array, offset: number, input: SegmentInput, fragIndex: number, datagram: number = DEFAULT_DATAGRAM): number {
  checkInput(input);
  const count = fragmentCount(input.body.length, datagram);
  if (!Number.isInteger(fragIndex) || fragIndex < 0 || fragIndex >= count) throw new RangeError(`fragment ${fragIndex} of a body in ${count} fragments`);
  return writeOne(out, offset, input, input.bodyCrc ?? crc32(input.body), fragIndex, count, fragmentBytes(datagram));
}

function writeOne(out: Uint8Array, offset: number, input: SegmentInput, bodyCrc: number, fragIndex: number, count: number, f: number): number {
  const body = input.body;
  const fragOffset = fragIndex * f;
  const fragLength = Math.min(f, body.length - fragOffset);
  const headerAt = offset + FRAME_HEADER_BYTES;
  const payloadLength = TRANSPORT_HEADER_BYTES + fragLength;
  if (headerAt + payloadLength + 2 > out.length) throw new RangeError(`frame of ${payloadLength + FRAME_OVERHEAD} bytes does not fit at offset ${offset} of ${out.length}`);
  const last = fragIndex === count - 1;
  writeTransportHeader(out, headerAt, {
    flags: ((input.flags ?? 0) & ~SEGMENT_FLAG.LAST_FRAGMENT) | (last ? SEGMENT_FLAG.LAST_FRAGMENT : 0),
    source: input.source,
    session: input.session,
    seq: (input.seq + fragIndex) >>> 0,
    epoch: input.epoch,
    position: input.position,
    sample: input.sample,
    fragIndex,
    fragCount: count,
    fragOffset,
    bodyLength: body.length,
    bodyCrc: bodyCrc >>> 0,
  });
  out.set(body.subarray(fragOffset, fragOffset + fragLength), headerAt + TRANSPORT_HEADER_BYTES);
  // The payload already sits in place: writeFrame sees the same view and skips its copy.
  return writeFrame(out, offset, { src: input.src, dst: input.dst, typ: TYP.SEGMENT, payload: out.subarray(headerAt, headerAt + payloadLength) });
}

/**
 * Writes every fragment of `input.body` as SEGMENT frames from `offset` of `out` (which must hold
 * `segmentedSize(body.length, datagram)` bytes from there). Returns the views of the frames, the
 * offset after the last one and the next seq.
 */
export function writeSegments(out: Uint8Array, offset: number, input: SegmentInput, datagram: number = DEFAULT_DATAGRAM): { frames: Uint8Array[]; end: number; nextSeq: number } {
  checkInput(input);
  const count = fragmentCount(input.body.length, datagram);
  const f = fragmentBytes(datagram);
  const bodyCrc = input.bodyCrc ?? crc32(input.body);
  const frames: Uint8Array[] = new Array<Uint8Array>(count);
  let at = offset;
  for (let i = 0; i < count; i++) {
    const end = writeOne(out, at, input, bodyCrc, i, count, f);
    frames[i] = out.subarray(at, end);
    at = end;
  }
  return { frames, end: at, nextSeq: (input.seq + count) >>> 0 };
}

/** Cuts one sample body into SEGMENT frames held in one new buffer. */
export function segmentSample(input: SegmentInput, options: Readonly<Partial<SegmentOptions>> = {}): Segmented {
  const datagram = options.datagram ?? DEFAULT_DATAGRAM;
  const buffer = new Uint8Array(segmentedSize(input.body.length, datagram));
  const { frames, nextSeq } = writeSegments(buffer, 0, input, datagram);
  return { buffer, frames, nextSeq };
}
