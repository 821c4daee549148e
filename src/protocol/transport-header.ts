/**
 * The transport header (NDP.md §4): the first 40 bytes of every SEGMENT frame's payload, followed by
 * one fragment of a sample body (§5). It lives inside the payload so every v1 parser still reads
 * every frame. All integers big-endian.
 *
 * | off | size | field      |
 * | --- | ---- | ---------- |
 * | 0   | 1    | version (1) |
 * | 1   | 1    | flags (registry segmentFlags) |
 * | 2   | 1    | source (index into the session's source list) |
 * | 3   | 1    | reserved, 0 |
 * | 4   | 4    | session id |
 * | 8   | 4    | sequence number (per session, per frame, from 0) |
 * | 12  | 4    | epoch |
 * | 16  | 4    | position (ordinal of the sample in this session's order within the epoch) |
 * | 20  | 4    | sample index (in its dataset) |
 * | 24  | 2    | fragment index |
 * | 26  | 2    | fragment count |
 * | 28  | 4    | fragment offset (byte offset of this fragment in the body) |
 * | 32  | 4    | body length (bytes of the whole sample body) |
 * | 36  | 4    | body CRC-32 (zlib / ISO-HDLC, of the whole body) |
 */
import { NdpError } from './errors.js';

export const TRANSPORT_HEADER_BYTES = 40;
export const TRANSPORT_VERSION = 1;

export interface TransportHeader {
  readonly version: number;
  readonly flags: number;
  readonly source: number;
  readonly session: number;
  readonly seq: number;
  readonly epoch: number;
  readonly position: number;
  readonly sample: number;
  readonly fragIndex: number;
  readonly fragCount: number;
  readonly fragOffset: number;
  readonly bodyLength: number;
  readonly bodyCrc: number;
}

/** Writes `header` into `out` at `offset` (40 bytes). `version` defaults to 1. */
export function writeTransportHeader(out: Uint8Array, offset: number, header: Omit<TransportHeader, 'version'> & { version?: number }): void {
  const view = new DataView(out.buffer, out.byteOffset + offset, TRANSPORT_HEADER_BYTES);
  view.setUint8(0, header.version ?? TRANSPORT_VERSION);
  view.setUint8(1, header.flags);
  view.setUint8(2, header.source);
  view.setUint8(3, 0);
  view.setUint32(4, header.session);
  view.setUint32(8, header.seq);
  view.setUint32(12, header.epoch);
  view.setUint32(16, header.position);
  view.setUint32(20, header.sample);
  view.setUint16(24, header.fragIndex);
  view.setUint16(26, header.fragCount);
  view.setUint32(28, header.fragOffset);
  view.setUint32(32, header.bodyLength);
  view.setUint32(36, header.bodyCrc);
}

/**
 * Reads the transport header at the start of a SEGMENT payload and returns it with the fragment
 * bytes (a view, no copy). Throws NDP_ERR_BAD_SEGMENT for a short payload or fields that cannot
 * belong to any sample, NDP_ERR_UNSUPPORTED_VERSION for a version other than 1.
 */
export function readTransportHeader(payload: Uint8Array): { header: TransportHeader; fragment: Uint8Array } {
  if (payload.length < TRANSPORT_HEADER_BYTES) {
    throw new NdpError('NDP_ERR_BAD_SEGMENT', `SEGMENT payload of ${payload.length} bytes is shorter than the ${TRANSPORT_HEADER_BYTES}-byte transport header`);
  }
  const view = new DataView(payload.buffer, payload.byteOffset, TRANSPORT_HEADER_BYTES);
  const version = view.getUint8(0);
  if (version !== TRANSPORT_VERSION) throw new NdpError('NDP_ERR_UNSUPPORTED_VERSION', `transport header version ${version}, this implementation speaks ${TRANSPORT_VERSION}`);
  const header: TransportHeader = {
    version,
    flags: view.getUint8(1),
    source: view.getUint8(2),
    session: view.getUint32(4),
    seq: view.getUint32(8),
    epoch: view.getUint32(12),
    position: view.getUint32(16),
    sample: view.getUint32(20),
    fragIndex: view.getUint16(24),
    fragCount: view.getUint16(26),
    fragOffset: view.getUint32(28),
    bodyLength: view.getUint32(32),
    bodyCrc: view.getUint32(36),
  };
  const fragment = payload.subarray(TRANSPORT_HEADER_BYTES);
  // NDP.md §4.2: a fragment must lie inside its body and its index inside its count.
  if (header.fragCount === 0 || header.fragIndex >= header.fragCount || header.fragOffset + fragment.length > header.bodyLength) {
    throw new NdpError(
      'NDP_ERR_BAD_SEGMENT',
      `fragment ${header.fragIndex}/${header.fragCount} at ${header.fragOffset}+${fragment.length} does not fit a body of ${header.bodyLength} bytes`,
    );
  }
  return { header, fragment };
}
