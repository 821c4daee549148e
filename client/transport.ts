/**
 * A client transport: one connection to a data server that moves raw bytes, one unit per UDP
 * datagram or WebSocket message (NDP.md §7.2). The shape follows nats.js: connect / send / close /
 * closed, plus async iteration over what arrives. The session layer (client/session.ts) installs a
 * synchronous `onMessage` handler instead of iterating when it needs every microsecond (a UDP
 * datagram costs ~4–5 µs of JS; a promise per datagram would add to it).
 */
import type { CaptureTap, Endpoint } from '../src/capture/tap.js';

export type TransportKind = 'udp' | 'ws';

export interface Transport extends AsyncIterable<Uint8Array> {
  readonly kind: TransportKind;
  readonly local: Endpoint;
  readonly remote: Endpoint;
  /** Sends one datagram / one binary message. Errors surface through `closed`. */
  send(bytes: Uint8Array): void;
  /** Installs the receive handler; messages that arrived before it are handed to it first. */
  onMessage(handler: (bytes: Uint8Array) => void): void;
  /** Closes the connection; idempotent. */
  close(): Promise<void>;
  /** Resolves when the connection is gone: undefined after `close()`, the error otherwise. */
  readonly closed: Promise<Error | undefined>;
}

export interface TransportOptions {
  /** Called for every datagram/message sent and received. Defaults to none. */
  readonly tap?: CaptureTap;
}

/**
 * Messages that arrive before a handler is installed (or for async iteration) wait here, bounded:
 * past `limit` the oldest are discarded and counted, so a reader that never reads cannot grow memory.
 */
export class MessageBuffer implements AsyncIterable<Uint8Array> {
  private readonly queue: Uint8Array[] = [];
  private handler: ((bytes: Uint8Array) => void) | undefined;
  private wake: (() => void) | undefined;
  private ended = false;
  /** Messages discarded because the buffer was full. */
  overflowed = 0;

  constructor(private readonly limit = 65536) {}

  push(bytes: Uint8Array): void {
    if (this.handler !== undefined) {
      this.handler(bytes);
      return;
    }
    if (this.queue.length >= this.limit) {
      this.queue.shift();
      this.overflowed++;
    }
    this.queue.push(bytes);
    this.wake?.();
  }

  setHandler(handler: (bytes: Uint8Array) => void): void {
    this.handler = handler;
    for (const bytes of this.queue.splice(0)) handler(bytes);
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}
