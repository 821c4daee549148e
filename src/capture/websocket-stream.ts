/**
 * Recovers WebSocket binary messages from captured TCP segments: per direction, in-order
 * reassembly by sequence number (retransmitted bytes skipped, out-of-order segments held, bounded),
 * then the HTTP Upgrade head is skipped (RFC 6455 §4) and WebSocket frames are parsed (§5.2),
 * unmasked, and joined across continuation frames into messages.
 *
 * A direction whose first bytes are neither an HTTP request nor a `101` response is not WebSocket
 * and is ignored. Compressed messages (permessage-deflate, RSV1) cannot be read from a capture of
 * the negotiation alone and are reported, not guessed at.
 */
import { ByteQueue } from './byte-queue.js';
import { TCP_FLAG } from './ip-packet.js';

export type WebSocketEvent =
  | { readonly kind: 'message'; readonly payload: Uint8Array }
  | { readonly kind: 'error'; readonly code: 'NDP_ERR_CAPTURE_STREAM'; readonly message: string };

export interface WebSocketStreamLimits {
  /** Bytes of out-of-order TCP data held per direction. Defaults to 16 MiB. */
  readonly maxOutOfOrderBytes: number;
  /** Largest WebSocket message reassembled. Defaults to 64 MiB. */
  readonly maxMessageBytes: number;
}

export const WEBSOCKET_STREAM_DEFAULTS: WebSocketStreamLimits = Object.freeze({ maxOutOfOrderBytes: 16 << 20, maxMessageBytes: 64 << 20 });

const MAX_HTTP_HEAD = 64 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

type State = 'start' | 'http' | 'websocket' | 'ignored';

/** One direction of one TCP connection. */
export class WebSocketDirection {
  private nextSeq: number | undefined;
  private readonly held = new Map<number, Uint8Array>();
  private heldBytes = 0;
  private state: State = 'start';
  private readonly bytes = new ByteQueue();
  private message: Uint8Array[] = [];
  private messageBytes = 0;
  private inMessage = false;

  constructor(private readonly limits: WebSocketStreamLimits = WEBSOCKET_STREAM_DEFAULTS) {}

  get isWebSocket(): boolean {
    return this.state === 'websocket';
  }

  /** Feeds one captured segment; returns the messages (and stream errors) it completes. */
  segment(seq: number, flags: number, payload: Uint8Array): WebSocketEvent[] {
    const events: WebSocketEvent[] = [];
    if (flags & TCP_FLAG.SYN) {
      this.nextSeq = (seq + 1) >>> 0;
      return events;
    }
    if (payload.length === 0 || this.state === 'ignored') return events;
    if (this.nextSeq === undefined) this.nextSeq = seq;
    const ahead = (seq - this.nextSeq) | 0;
    if (ahead > 0) {
      if (!this.held.has(seq)) {
        if (this.heldBytes + payload.length > this.limits.maxOutOfOrderBytes) {
          this.state = 'ignored';
          events.push({ kind: 'error', code: 'NDP_ERR_CAPTURE_STREAM', message: `more than ${this.limits.maxOutOfOrderBytes} bytes out of order (a segment missing from the capture): rest of the stream skipped` });
          return events;
        }
        this.held.set(seq, payload.slice());
        this.heldBytes += payload.length;
      }
      return events;
    }
    // Bytes before nextSeq were seen already (a retransmission): only the new tail counts.
    if (-ahead < payload.length) this.deliver(payload.subarray(-ahead), events);
    for (let next = this.held.get(this.nextSeq); next !== undefined; next = this.held.get(this.nextSeq)) {
      this.held.delete(this.nextSeq);
      this.heldBytes -= next.length;
      this.deliver(next, events);
    }
    return events;
  }

  private deliver(data: Uint8Array, events: WebSocketEvent[]): void {
    this.nextSeq = ((this.nextSeq ?? 0) + data.length) >>> 0;
    if (this.state === 'ignored') return;
    this.bytes.push(data);
    this.parse(events);
  }

  private parse(events: WebSocketEvent[]): void {
    if (this.state === 'start') {
      if (this.bytes.length < 5) return;
      const first = Buffer.from(this.bytes.peek(5)).toString('latin1');
      this.state = first === 'GET /' || first === 'HTTP/' ? 'http' : 'ignored';
      if (this.state === 'ignored') return;
    }
    if (this.state === 'http') {
      const head = Buffer.from(this.bytes.peek(Math.min(this.bytes.length, MAX_HTTP_HEAD)));
      const end = head.indexOf(HEAD_END);
      if (end < 0) {
        if (head.length >= MAX_HTTP_HEAD) this.state = 'ignored';
        return;
      }
      const text = head.subarray(0, end).toString('latin1');
      // A response other than 101 means the upgrade failed: what follows is HTTP, not WebSocket.
      if (text.startsWith('HTTP/') && !/^HTTP\/1\.[01] 101/.test(text)) {
        this.state = 'ignored';
        return;
      }
      this.bytes.consume(end + HEAD_END.length);
      this.state = 'websocket';
    }
    while (this.state === 'websocket' && this.frame(events));
  }

  /** Parses one WebSocket frame if it is whole; false when more bytes are needed. */
  private frame(events: WebSocketEvent[]): boolean {
    if (this.bytes.length < 2) return false;
    const head = this.bytes.peek(Math.min(this.bytes.length, 14));
    const fin = (head[0]! & 0x80) !== 0;
    const rsv1 = (head[0]! & 0x40) !== 0;
    const opcode = head[0]! & 0x0f;
    const masked = (head[1]! & 0x80) !== 0;
    let length = head[1]! & 0x7f;
    let at = 2;
    if (length === 126) {
      if (head.length < 4) return false;
      length = (head[2]! << 8) | head[3]!;
      at = 4;
    } else if (length === 127) {
      if (head.length < 10) return false;
      length = Number(new DataView(head.buffer, head.byteOffset + 2, 8).getBigUint64(0));
      at = 10;
    }
    const maskAt = at;
    if (masked) at += 4;
    if (opcode < 8 && this.messageBytes + length > this.limits.maxMessageBytes) {
      this.state = 'ignored';
      events.push({ kind: 'error', code: 'NDP_ERR_CAPTURE_STREAM', message: `WebSocket message longer than ${this.limits.maxMessageBytes} bytes: rest of the stream skipped` });
      return false;
    }
    if (this.bytes.length < at + length) return false;
    const whole = this.bytes.peek(at + length);
    const payload = whole.slice(at);
    if (masked) {
      const key = whole.subarray(maskAt, maskAt + 4);
      for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
    }
    this.bytes.consume(at + length);
    if (opcode === 0x8) {
      this.state = 'ignored';
      return false;
    }
    if (opcode >= 0x8) return true;
    if (opcode !== 0x0) {
      this.inMessage = opcode === 0x2;
      this.message = [];
      this.messageBytes = 0;
      if (rsv1 && this.inMessage) {
        events.push({ kind: 'error', code: 'NDP_ERR_CAPTURE_STREAM', message: 'compressed WebSocket message (permessage-deflate): not decoded' });
        this.inMessage = false;
      }
    }
    if (!this.inMessage) return true;
    this.message.push(payload);
    this.messageBytes += payload.length;
    if (fin) {
      events.push({ kind: 'message', payload: this.message.length === 1 ? this.message[0]! : Buffer.concat(this.message) });
      this.inMessage = false;
      this.message = [];
      this.messageBytes = 0;
    }
    return true;
  }
}
