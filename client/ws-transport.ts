/**
 * WebSocket client transport (NDP.md §7.2, §7.4): `ws://HOST:PORT/v1/stream` or `wss://`, offering
 * the subprotocol `ndp.v1`; one session per connection; binary messages of one or more whole frames.
 * A text message from the server is not NDP: the client closes with 1003 (the session layer counts it).
 */
import WebSocket from 'ws';
import type { Endpoint } from '../src/capture/tap.js';
import { NdpError } from '../src/protocol/errors.js';
import { MessageBuffer, type Transport, type TransportOptions } from './transport.js';

export const NDP_WS_SUBPROTOCOL = 'ndp.v1';

export interface WsTransportOptions extends TransportOptions {
  /** Largest server message accepted, bytes; a larger one closes with 1009. Defaults to 2 MiB (the server sends at most 1 MiB). */
  readonly maxMessageBytes?: number;
  /** Sent as `Authorization: Bearer TOKEN` on the upgrade request. Defaults to none. */
  readonly bearer?: string;
  /** Milliseconds to wait for the upgrade. Defaults to 10,000. */
  readonly connectTimeoutMs?: number;
  /** TLS: accept a self-signed server certificate (tests). Defaults to true (verify). */
  readonly rejectUnauthorized?: boolean;
  /** TLS: extra CA certificates (PEM) to trust. */
  readonly ca?: string | Buffer;
}

export class WsTransport implements Transport {
  readonly kind = 'ws' as const;
  readonly closed: Promise<Error | undefined>;
  /** Text messages received (not NDP; the connection is closed on the first). */
  textMessages = 0;
  private readonly buffer = new MessageBuffer();
  private resolveClosed!: (error: Error | undefined) => void;
  private isClosed = false;
  private closing = false;

  private constructor(
    private readonly socket: WebSocket,
    readonly local: Endpoint,
    readonly remote: Endpoint,
    private readonly options: WsTransportOptions,
  ) {
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    options.tap?.wsOpen(local, remote);
    socket.on('message', (data, isBinary) => {
      if (!isBinary) {
        this.textMessages++;
        socket.close(1003, 'NDP_ERR_TEXT_MESSAGE');
        return;
      }
      const bytes = data as Buffer;
      options.tap?.wsMessage(remote, local, bytes);
      this.buffer.push(bytes);
    });
    socket.on('error', (err) => this.finish(err));
    socket.on('close', (code, reason) => {
      const text = reason.toString();
      const normal = this.closing || code === 1000;
      this.finish(normal ? undefined : new NdpError(text.startsWith('NDP_ERR_') ? (text as `NDP_ERR_${string}`) : 'NDP_ERR_CONNECTION_CLOSED', `WebSocket closed by the server: ${code}${text ? ` ${text}` : ''}`));
    });
  }

  static async connect(url: string, options: WsTransportOptions = {}): Promise<WsTransport> {
    const headers: Record<string, string> = {};
    if (options.bearer !== undefined) headers.authorization = `Bearer ${options.bearer}`;
    const socket = new WebSocket(url, NDP_WS_SUBPROTOCOL, {
      headers,
      maxPayload: options.maxMessageBytes ?? 2 * 1024 * 1024,
      perMessageDeflate: false,
      handshakeTimeout: options.connectTimeoutMs ?? 10_000,
      rejectUnauthorized: options.rejectUnauthorized ?? true,
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
    });
    socket.binaryType = 'nodebuffer';
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('open', resolve);
        socket.once('error', reject);
        socket.once('unexpected-response', (_req, res) => {
          reject(new NdpError(res.statusCode === 401 ? 'NDP_ERR_UNAUTHORIZED' : 'NDP_ERR_REFUSED', `WebSocket upgrade to ${url} refused: HTTP ${res.statusCode}`));
          res.resume();
        });
      });
    } catch (cause) {
      socket.terminate();
      if (cause instanceof NdpError) throw cause;
      throw new NdpError('NDP_ERR_UNREACHABLE', `cannot reach ${url}: ${(cause as Error).message}`, { cause });
    }
    if (socket.protocol !== NDP_WS_SUBPROTOCOL) {
      socket.terminate();
      throw new NdpError('NDP_ERR_REFUSED', `server at ${url} did not agree to subprotocol ${NDP_WS_SUBPROTOCOL}`);
    }
    // ws exposes the underlying socket; its addresses go to the capture tap.
    const raw = (socket as unknown as { _socket: { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number } })._socket;
    return new WsTransport(
      socket,
      { address: raw.localAddress ?? '', port: raw.localPort ?? 0 },
      { address: raw.remoteAddress ?? '', port: raw.remotePort ?? 0 },
      options,
    );
  }

  send(bytes: Uint8Array): void {
    if (this.isClosed || this.socket.readyState !== WebSocket.OPEN) return;
    this.options.tap?.wsMessage(this.local, this.remote, bytes);
    this.socket.send(bytes, { binary: true });
  }

  onMessage(handler: (bytes: Uint8Array) => void): void {
    this.buffer.setHandler(handler);
  }

  /** Bytes queued to send but not yet written to the socket. */
  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  async close(): Promise<void> {
    if (!this.isClosed) {
      this.closing = true;
      this.socket.close(1000);
      // A peer that never answers the close handshake must not hold us: terminate after 1 s.
      const timer = setTimeout(() => this.socket.terminate(), 1000);
      await this.closed;
      clearTimeout(timer);
    }
  }

  private finish(error: Error | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.options.tap?.wsClose(this.local, this.remote);
    this.buffer.end();
    this.resolveClosed(error);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.buffer[Symbol.asyncIterator]();
  }
}
