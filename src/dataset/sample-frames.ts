/**
 * A sample as it is recorded in an .ndp file (NDP.md §10.2): its body (§5) cut into SEGMENT frames
 * (§4) with session 0, exactly what a server would send, one frame per sample unless the body does
 * not fit one frame. Also the way back: the frames of one sample, checked, to its body.
 */
import { crc32 } from 'node:zlib';
import { NdpError } from '../protocol/errors.js';
import { readFrameAt, writeFrame } from '../protocol/frame.js';
import { FRAME_OVERHEAD, MAX_PAYLOAD, SEGMENT_FLAG, TYP } from '../protocol/registry.js';
import { TRANSPORT_HEADER_BYTES, readTransportHeader, writeTransportHeader } from '../protocol/transport-header.js';

export interface DecodedRecord {
  readonly src: number;
  readonly dst: number;
  readonly sample: number;
  readonly body: Uint8Array;
  readonly frames: number;
}

/**
 * Reads the frames of one sample from `bytes` (exactly its frames, as the index delimits them).
 * A frame whose CRC-16 fails is NDP_ERR_BAD_CRC, a body whose CRC-32 fails NDP_ERR_BODY_CRC;
 * frames that are not one whole sample (wrong type, fragments out of order, bytes left over, another
 * sample index than `expectedSample`) are NDP_ERR_INDEX_MISMATCH: the index points at the wrong bytes.
 * The body is a view into `bytes` when the sample is one frame.
 */
export function readSampleFrames(bytes: Uint8Array, expectedSample: number): DecodedRecord {
  const mismatch = (why: string): NdpError => new NdpError('NDP_ERR_INDEX_MISMATCH', `sample ${expectedSample}: ${why}`);
  let at = 0;
  let body: Uint8Array | undefined;
  let src = 0;
  let dst = 0;
  let fragCount = 1;
  let frames = 0;
  let bodyCrc = 0;
  while (frames < fragCount) {
    let read;
    try {
      read = readFrameAt(bytes, at);
    } catch (cause) {
      throw mismatch(`no frame at byte ${at} of its record (${(cause as Error).message})`);
    }
    if (read === undefined) throw mismatch(`record of ${bytes.length} bytes ends inside frame ${frames}`);
    const { frame } = read;
    if (!frame.crcOk) throw new NdpError('NDP_ERR_BAD_CRC', `sample ${expectedSample}: CRC-16 of frame ${frames} does not match`);
    if (frame.typ !== TYP.SEGMENT) throw mismatch(`frame ${frames} has TYP 0x${frame.typ.toString(16)}, not SEGMENT`);
    const { header, fragment } = readTransportHeader(frame.payload);
    if (header.sample !== expectedSample) throw mismatch(`frames belong to sample ${header.sample}`);
    if (frames === 0) {
      fragCount = header.fragCount;
      src = frame.src;
      dst = frame.dst;
      bodyCrc = header.bodyCrc;
      if (fragCount === 1 && fragment.length === header.bodyLength) body = fragment;
      else body = new Uint8Array(header.bodyLength);
    }
    if (header.fragIndex !== frames || header.fragCount !== fragCount || header.bodyLength !== body!.length || header.bodyCrc !== bodyCrc) {
      throw mismatch(`fragment ${header.fragIndex}/${header.fragCount} out of order`);
    }
    if (body !== fragment) body!.set(fragment, header.fragOffset);
    frames++;
    at = read.end;
  }
  if (at !== bytes.length) throw mismatch(`${bytes.length - at} bytes after its last frame`);
  if (crc32(body!) !== bodyCrc) throw new NdpError('NDP_ERR_BODY_CRC', `sample ${expectedSample}: CRC-32 of its body does not match`);
  return { src, dst, sample: expectedSample, body: body!, frames };
}

