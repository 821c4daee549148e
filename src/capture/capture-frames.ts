/**
 * Every NDP frame in a capture file, from both transports: UDP datagrams (one frame each) and
 * binary WebSocket messages (one or more whole frames each), each decoded down to its transport
 * header (SEGMENT) or control message (CONTROL). Used by `ndp inspect FILE.pcap`.
 *
 * Which UDP datagrams are NDP: those whose first byte is the magic and whose length is exactly
 * LEN + 8 (the same heuristic as the Wireshark dissector), and every datagram to or from one of
 * `udpPorts` (a malformed one there is reported with its error code). Which TCP connections: those
 * that start with a WebSocket upgrade; every binary message on them must be whole NDP frames.
 */
import { decodeControl } from '../protocol/control.js';
import { isNdpError } from '../protocol/errors.js';
import { readFrameAt, type DecodedFrame } from '../protocol/frame.js';
import { FRAME_OVERHEAD, MAGIC, REGISTRY, TYP } from '../protocol/registry.js';
import { readTransportHeader, type TransportHeader } from '../protocol/transport-header.js';
import { readCapture, type CaptureInfo } from './capture-reader.js';
import { decodePacket } from './packet-decode.js';
import { WebSocketDirection, WEBSOCKET_STREAM_DEFAULTS, type WebSocketStreamLimits } from './websocket-stream.js';

export type Transport = 'udp' | 'ws';

interface Where {
  /** Capture packet number (tshark's frame.number) that carried, or completed, the frame. */
  readonly packet: number;
  /** Seconds since the Unix epoch. */
  readonly time: number;
  readonly transport: Transport;
  /** `address:port` (`[v6]:port`). */
  readonly from: string;
  readonly to: string;
}

export interface FrameRecord extends Where {
  readonly kind: 'frame';
  /** Index of the frame within its datagram or WebSocket message. */
  readonly index: number;
  readonly frame: DecodedFrame;
  readonly segment?: TransportHeader;
  readonly control?: Record<string, unknown>;
  /** Why the SEGMENT or CONTROL payload could not be decoded. */
  readonly payloadError?: { readonly code: string; readonly message: string };
}

export interface MalformedRecord extends Where {
  readonly kind: 'malformed';
  readonly code: string;
  readonly message: string;
}

export type CaptureRecord = FrameRecord | MalformedRecord;

export interface CaptureFramesOptions {
  /** UDP ports whose every datagram is NDP. Defaults to the registry's UDP port (7400). */
  readonly udpPorts?: readonly number[];
  readonly limits?: WebSocketStreamLimits;
}

function endpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function describePayload(frame: DecodedFrame): Pick<FrameRecord, 'segment' | 'control' | 'payloadError'> {
  try {
    if (frame.typ === TYP.SEGMENT) return { segment: readTransportHeader(frame.payload).header };
    if (frame.typ === TYP.CONTROL) return { control: decodeControl(frame.payload) as unknown as Record<string, unknown> };
  } catch (err) {
    if (!isNdpError(err)) throw err;
    return { payloadError: { code: err.code, message: err.message } };
  }
  return {};
}

/** Frames of one whole datagram or message; anything that is not whole frames becomes a malformed record. */
function* framesOf(bytes: Uint8Array, where: Where): Generator<CaptureRecord> {
  let at = 0;
  let index = 0;
  while (at < bytes.length) {
    let read: ReturnType<typeof readFrameAt>;
    try {
      read = readFrameAt(bytes, at);
    } catch (err) {
      if (!isNdpError(err)) throw err;
      yield { ...where, kind: 'malformed', code: err.code, message: `${err.message} (frame ${index} of the ${where.transport === 'udp' ? 'datagram' : 'message'})` };
      return;
    }
    if (read === undefined) {
      yield { ...where, kind: 'malformed', code: 'NDP_ERR_TRUNCATED', message: `${bytes.length - at} bytes at the end of the ${where.transport === 'udp' ? 'datagram' : 'message'} are not a whole frame` };
      return;
    }
    // The payload is a view into the capture reader's buffer: keep a copy with the record.
    const frame = { ...read.frame, payload: read.frame.payload.slice() };
    yield { ...where, kind: 'frame', index, frame, ...describePayload(frame) };
    at = read.end;
    index++;
  }
}

function looksLikeFrame(payload: Uint8Array): boolean {
  return payload.length >= FRAME_OVERHEAD && payload[0] === MAGIC && ((payload[4]! << 8) | payload[5]!) + FRAME_OVERHEAD === payload.length;
}

/** Reads `path` and yields its NDP frames and malformed NDP units, in capture order. */
export function* captureFrames(path: string, options: CaptureFramesOptions = {}, info?: CaptureInfo): Generator<CaptureRecord> {
  const udpPorts = new Set(options.udpPorts ?? [REGISTRY.ports.udp]);
  const limits = options.limits ?? WEBSOCKET_STREAM_DEFAULTS;
  const directions = new Map<string, WebSocketDirection>();
  for (const packet of readCapture(path, info)) {
    const decoded = decodePacket(packet.linkType, packet.data, packet.originalLength);
    if (decoded.kind === 'udp') {
      const onPort = udpPorts.has(decoded.srcPort) || udpPorts.has(decoded.dstPort);
      if (!onPort && !looksLikeFrame(decoded.payload)) continue;
      const where: Where = { packet: packet.number, time: packet.time, transport: 'udp', from: endpoint(decoded.src, decoded.srcPort), to: endpoint(decoded.dst, decoded.dstPort) };
      if (decoded.cut) {
        yield { ...where, kind: 'malformed', code: 'NDP_ERR_TRUNCATED', message: `datagram cut by the capture's snap length (${decoded.payload.length} bytes captured)` };
        continue;
      }
      yield* framesOf(decoded.payload, where);
    } else if (decoded.kind === 'ip-fragment') {
      // Counted, not decoded: on loopback NDP datagrams are never fragmented; elsewhere the summary says so.
      if (info !== undefined) info.ipFragments = (info.ipFragments ?? 0) + 1;
    } else if (decoded.kind === 'tcp') {
      const from = endpoint(decoded.src, decoded.srcPort);
      const to = endpoint(decoded.dst, decoded.dstPort);
      const id = `${from}>${to}`;
      let direction = directions.get(id);
      if (direction === undefined) {
        direction = new WebSocketDirection(limits);
        directions.set(id, direction);
      }
      const where: Where = { packet: packet.number, time: packet.time, transport: 'ws', from, to };
      for (const event of direction.segment(decoded.seq, decoded.flags, decoded.payload)) {
        if (event.kind === 'error') yield { ...where, kind: 'malformed', code: event.code, message: event.message };
        else yield* framesOf(event.payload, where);
      }
      // A closed connection's state is not needed again (a new one with the same ports starts with SYN).
      if (decoded.flags & 0x05) directions.delete(id);
    }
  }
}
