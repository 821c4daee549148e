/**
 * Synthesizes the TCP side of a WebSocket connection for a capture: the three-way handshake, the
 * HTTP/1.1 Upgrade request and its `101 Switching Protocols` answer (RFC 6455 §4), each message as
 * one binary WebSocket frame (client→server masked, RFC 6455 §5.3), and the closing FIN exchange.
 * Sequence and acknowledgement numbers advance byte for byte, so Wireshark reassembles the stream
 * and its HTTP and WebSocket dissectors decode it as if it had been sniffed.
 *
 * The request is `GET /v1/stream` with subprotocol `ndp.v1` (NDP.md §7.2), so Wireshark hands the
 * messages to the dissector registered for that subprotocol. The handshake is not the one that went over the wire (transports report messages, not bytes): it
 * carries no headers of the real request, so no token or cookie ever reaches a capture file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { MAX_IP_PAYLOAD, TCP_FLAG, TCP_HEADER_BYTES, type TcpFields } from './ip-packet.js';

/** RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key before hashing. */
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** NDP.md §7.2: the stream's path and the subprotocol every client offers and the server selects. */
export const NDP_WS_PATH = '/v1/stream';
export const NDP_WS_SUBPROTOCOL = 'ndp.v1';
const OPCODE_BINARY = 0x2;
const FIN = 0x80;
const MASK = 0x80;
/** Largest TCP payload per segment: whatever one IPv4 packet holds after the TCP header. */
export const MAX_SEGMENT_DATA = MAX_IP_PAYLOAD - TCP_HEADER_BYTES;

export interface SynthSegment {
  /** true: client → server. */
  readonly fromClient: boolean;
  readonly tcp: TcpFields;
  readonly data: Uint8Array;
}

/** The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 §4.2.2). */
export function websocketAccept(key: string): string {
  return createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64');
}

/**
 * `payload` XOR the 4-byte key repeated (RFC 6455 §5.3), four bytes per step in an aligned scratch
 * array (bench/pcap-writer.ts: the byte loop made client→server capture 3-4× slower than server→client).
 */
function maskPayload(payload: Uint8Array, key: Uint8Array): Uint8Array {
  const words = payload.length >> 2;
  const out = new Uint8Array(payload.length);
  out.set(payload);
  const keyWord = new Uint32Array(key.slice(0, 4).buffer)[0]!;
  const view = new Uint32Array(out.buffer, 0, words);
  for (let i = 0; i < words; i++) view[i] = view[i]! ^ keyWord;
  for (let i = words * 4; i < payload.length; i++) out[i] = payload[i]! ^ key[i & 3]!;
  return out;
}

/** One unfragmented binary WebSocket frame; `maskKey` given → masked (client → server). */
export function websocketFrame(payload: Uint8Array, maskKey?: Uint8Array): Uint8Array {
  const n = payload.length;
  const lengthBytes = n < 126 ? 0 : n <= 0xffff ? 2 : 8;
  const headerBytes = 2 + lengthBytes + (maskKey === undefined ? 0 : 4);
  const out = new Uint8Array(headerBytes + n);
  const view = new DataView(out.buffer);
  out[0] = FIN | OPCODE_BINARY;
  const maskBit = maskKey === undefined ? 0 : MASK;
  if (lengthBytes === 0) out[1] = maskBit | n;
  else if (lengthBytes === 2) {
    out[1] = maskBit | 126;
    view.setUint16(2, n);
  } else {
    out[1] = maskBit | 127;
    view.setBigUint64(2, BigInt(n));
  }
  if (maskKey === undefined) {
    out.set(payload, headerBytes);
  } else {
    out.set(maskKey, headerBytes - 4);
    out.set(maskPayload(payload, maskKey), headerBytes);
  }
  return out;
}

/** The state of one synthesized connection: the next sequence number each side sends. */
export class WebSocketSynth {
  private clientSeq: number;
  private serverSeq: number;

  constructor(private readonly host: string) {
    this.clientSeq = randomBytes(4).readUInt32BE(0);
    this.serverSeq = randomBytes(4).readUInt32BE(0);
  }

  /** SYN, SYN-ACK, ACK, then the Upgrade request and response. */
  open(): SynthSegment[] {
    const key = randomBytes(16).toString('base64');
    const request =
      `GET ${NDP_WS_PATH} HTTP/1.1\r\nHost: ${this.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${NDP_WS_SUBPROTOCOL}\r\n\r\n`;
    const response =
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Accept: ${websocketAccept(key)}\r\nSec-WebSocket-Protocol: ${NDP_WS_SUBPROTOCOL}\r\n\r\n`;
    const segments: SynthSegment[] = [];
    segments.push({ fromClient: true, tcp: { seq: this.clientSeq, ack: 0, flags: TCP_FLAG.SYN }, data: new Uint8Array(0) });
    this.clientSeq = (this.clientSeq + 1) >>> 0;
    segments.push({ fromClient: false, tcp: { seq: this.serverSeq, ack: this.clientSeq, flags: TCP_FLAG.SYN | TCP_FLAG.ACK }, data: new Uint8Array(0) });
    this.serverSeq = (this.serverSeq + 1) >>> 0;
    segments.push({ fromClient: true, tcp: { seq: this.clientSeq, ack: this.serverSeq, flags: TCP_FLAG.ACK }, data: new Uint8Array(0) });
    segments.push(...this.data(true, Buffer.from(request, 'latin1')));
    segments.push(...this.data(false, Buffer.from(response, 'latin1')));
    return segments;
  }

  /** One binary message in one WebSocket frame, cut into as many TCP segments as it needs. */
  message(fromClient: boolean, payload: Uint8Array): SynthSegment[] {
    return this.data(fromClient, websocketFrame(payload, fromClient ? randomBytes(4) : undefined));
  }

  /** FIN from the client, FIN-ACK from the server, the client's last ACK. */
  close(): SynthSegment[] {
    const segments: SynthSegment[] = [];
    segments.push({ fromClient: true, tcp: { seq: this.clientSeq, ack: this.serverSeq, flags: TCP_FLAG.FIN | TCP_FLAG.ACK }, data: new Uint8Array(0) });
    this.clientSeq = (this.clientSeq + 1) >>> 0;
    segments.push({ fromClient: false, tcp: { seq: this.serverSeq, ack: this.clientSeq, flags: TCP_FLAG.FIN | TCP_FLAG.ACK }, data: new Uint8Array(0) });
    this.serverSeq = (this.serverSeq + 1) >>> 0;
    segments.push({ fromClient: true, tcp: { seq: this.clientSeq, ack: this.serverSeq, flags: TCP_FLAG.ACK }, data: new Uint8Array(0) });
    return segments;
  }

  private data(fromClient: boolean, bytes: Uint8Array): SynthSegment[] {
    const segments: SynthSegment[] = [];
    for (let at = 0; at < bytes.length; at += MAX_SEGMENT_DATA) {
      const data = bytes.subarray(at, Math.min(bytes.length, at + MAX_SEGMENT_DATA));
      const seq = fromClient ? this.clientSeq : this.serverSeq;
      const ack = fromClient ? this.serverSeq : this.clientSeq;
      segments.push({ fromClient, tcp: { seq, ack, flags: TCP_FLAG.ACK | TCP_FLAG.PSH }, data });
      if (fromClient) this.clientSeq = (this.clientSeq + data.length) >>> 0;
      else this.serverSeq = (this.serverSeq + data.length) >>> 0;
    }
    return segments;
  }
}
