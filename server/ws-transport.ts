/**
 * The WebSocket front end (NDP.md §7.2, §7.4): `ws://HOST:PORT/v1/stream` (wss with a certificate),
 * subprotocol `ndp.v1`, binary messages of whole frames, one session per connection. Backpressure:
 * the link stops taking frames while `bufferedAmount` plus its unsent batch exceeds
 * `--ws-high-water`, so a reader that stops reading holds a bounded amount of server memory.
 * Liveness: a ping every heartbeat; a session hears nothing (pongs included) for the idle timeout
 * and closes.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { CaptureTap, Endpoint } from '../src/capture/tap.js';
import { decodeControl, encodeControlFrame, type ControlMessage } from '../src/protocol/control.js';
import { isNdpError, type NdpErrorCode } from '../src/protocol/errors.js';
import { readFrameAt } from '../src/protocol/frame.js';
import { CONTROL, TYP } from '../src/protocol/registry.js';
import { dispatchSessionMessage } from './control-dispatch.js';
import { listenHttp } from './listen-http.js';
import type { FrameKind, ServerMetrics } from './metrics.js';
import type { ServerOptions } from './options.js';
import type { Session, SessionLink } from './session.js';
import type { SessionManager, UntrustedSubscribe } from './session-manager.js';

export const WS_SUBPROTOCOL = 'ndp.v1';
export const WS_PATH = '/v1/stream';

/** WebSocket close code for a REJECT code (NDP.md §7.2). */
function closeCodeFor(code: string): number {
  if (code === 'NDP_ERR_UNAUTHORIZED') return 4401;
  if (code === 'NDP_ERR_TOO_MANY_SESSIONS' || code === 'NDP_ERR_SHUTDOWN') return 4503;
  return 4400;
}

function refuseUpgrade(socket: Duplex, status: number, text: string, code: string, extra = ''): void {
  const body = JSON.stringify({ error: { code, message: text } });
  socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extra}\r\n${body}`);
}

export class WsFrontEnd {
  private server: HttpServer | undefined;
  private readonly wss: WebSocketServer;
  private connections = 0;
  private readonly sockets = new Set<WebSocket>();

  constructor(
    private readonly manager: SessionManager,
    private readonly metrics: ServerMetrics,
    private readonly options: ServerOptions,
    private readonly tap: CaptureTap | undefined,
  ) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.wsMaxMessage,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    });
  }

  get secure(): boolean {
    return this.options.tls !== undefined;
  }

  async listen(host: string, port: number): Promise<number> {
    const tls = this.options.tls;
    const server = tls === undefined ? createHttpServer() : (createHttpsServer({ cert: Buffer.from(tls.cert), key: Buffer.from(tls.key) }) as unknown as HttpServer);
    this.server = server;
    server.on('request', (_req, res) => {
      res.writeHead(426, { 'Content-Type': 'application/json', Upgrade: 'websocket' });
      res.end(JSON.stringify({ error: { code: 'NDP_ERR_NOT_FOUND', message: `connect a WebSocket to ${WS_PATH} with subprotocol ${WS_SUBPROTOCOL}` } }));
    });
    server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    return listenHttp(server, host, port, this.options.maxConnections, () => this.metrics.drop('NDP_ERR_TOO_MANY_CONNECTIONS'));
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== WS_PATH) return refuseUpgrade(socket, 404, 'Not Found', 'NDP_ERR_NOT_FOUND');
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(WS_SUBPROTOCOL)) return refuseUpgrade(socket, 400, 'Bad Request', 'NDP_ERR_BAD_PARAMS');
    const auth = req.headers.authorization;
    let bearerOk = false;
    if (auth !== undefined) {
      const m = /^Bearer\s+(.+)$/i.exec(auth);
      if (m === null || !this.manager.tokenOk(m[1])) return refuseUpgrade(socket, 401, 'Unauthorized', 'NDP_ERR_UNAUTHORIZED', 'WWW-Authenticate: Bearer\r\n');
      bearerOk = true;
    }
    if (!this.manager.isAccepting) return refuseUpgrade(socket, 503, 'Service Unavailable', 'NDP_ERR_SHUTDOWN');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req, bearerOk));
  }

  private onConnection(ws: WebSocket, req: IncomingMessage, bearerOk: boolean): void {
    this.sockets.add(ws);
    const client: Endpoint = { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 };
    const server: Endpoint = { address: req.socket.localAddress ?? '', port: req.socket.localPort ?? 0 };
    this.tap?.wsOpen(client, server);
    const peer = `ws:${client.address}:${client.port}#${++this.connections}`;
    const link = new WsLink(ws, peer, this.options, this.tap, server, client);
    let session: Session | undefined;
    const closeWith = (code: number, reason: NdpErrorCode): void => {
      if (code !== 1009) this.metrics.drop(reason);
      link.close(code, reason);
    };
    const handshakeTimer = setTimeout(() => closeWith(4408, 'NDP_ERR_HANDSHAKE_TIMEOUT'), this.options.handshakeTimeoutMs);
    const pingTimer = setInterval(() => {
      if (ws.readyState === ws.OPEN) ws.ping();
    }, this.options.heartbeatMs);
    pingTimer.unref();

    ws.on('message', (data, isBinary) => {
      this.metrics.datagramsReceived.inc({ transport: 'ws' });
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      this.tap?.wsMessage(client, server, bytes);
      if (!isBinary) return closeWith(1003, 'NDP_ERR_TEXT_MESSAGE');
      session?.touch();
      let offset = 0;
      while (offset < bytes.length) {
        let read;
        try {
          read = readFrameAt(bytes, offset);
        } catch (err) {
          if (isNdpError(err)) return closeWith(1002, err.code);
          throw err;
        }
        if (read === undefined) return closeWith(1002, 'NDP_ERR_TRUNCATED');
        offset = read.end;
        const frame = read.frame;
        if (!frame.crcOk) {
          this.metrics.drop('NDP_ERR_BAD_CRC');
          continue;
        }
        if (frame.typ !== TYP.CONTROL) return closeWith(1002, 'NDP_ERR_UNEXPECTED_FRAME');
        let message: ControlMessage;
        try {
          message = decodeControl(frame.payload);
        } catch (err) {
          if (isNdpError(err)) {
            this.metrics.drop(err.code);
            continue;
          }
          throw err;
        }
        const untrusted = message as unknown as Record<string, unknown> & { t: number };
        if (message.t === CONTROL.SUBSCRIBE) {
          if (session !== undefined) {
            // One session per connection: a second SUBSCRIBE is a repeat (answered) or a mistake (counted).
            if (untrusted.nonce === session.nonce) session.repeatAccept();
            else this.metrics.drop('NDP_ERR_UNEXPECTED_FRAME');
            continue;
          }
          clearTimeout(handshakeTimer);
          const asked = bearerOk ? { ...untrusted, token: this.options.token } : untrusted;
          const result = this.manager.subscribe(asked as UntrustedSubscribe, link, 'ws');
          if (result.reject !== undefined) {
            link.send(encodeControlFrame(result.reject), 'control');
            const code = (result.reject as { code: string }).code;
            link.close(closeCodeFor(code), code);
            return;
          }
          session = result.session;
          continue;
        }
        if (message.t === CONTROL.HELLO) {
          this.metrics.drop('NDP_ERR_UNEXPECTED_FRAME');
          continue;
        }
        dispatchSessionMessage(this.manager, this.metrics, untrusted, peer);
      }
    });
    ws.on('pong', () => session?.touch());
    ws.on('error', (err: Error & { code?: string }) => {
      // ws closes the connection itself (1009 for a message over maxPayload, 1002 for a broken
      // WebSocket frame); 'close' follows and ends the session. Count why.
      this.metrics.drop(err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'NDP_ERR_PAYLOAD_TOO_LARGE' : 'NDP_ERR_BAD_WEBSOCKET');
    });
    ws.on('close', () => {
      this.sockets.delete(ws);
      clearTimeout(handshakeTimer);
      clearInterval(pingTimer);
      link.markClosed();
      this.tap?.wsClose(client, server);
      if (session !== undefined && session.state !== 'closed') session.close('client', undefined, false);
    });
  }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    // A connection that never upgraded is not in `sockets`; left open it would hold close() (and a
    // SIGTERM shutdown) until Node's header timeout.
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Waits until every connection has closed (after BYE + close frames), at most `ms`. */
  async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  }
}

/** One session's path over its WebSocket: frames batched into messages, bounded by the high-water mark. */
class WsLink implements SessionLink {
  readonly transport = 'ws' as const;
  private batch: Uint8Array[] = [];
  private batchBytes = 0;
  private flushScheduled = false;
  /** Bounded: a session waits for writability once at a time (Session.waitingWritable), so one entry per session. */
  private waiters: Array<() => void> = [];
  private closed = false;

  constructor(
    private readonly ws: WebSocket,
    readonly peer: string,
    private readonly options: ServerOptions,
    private readonly tap: CaptureTap | undefined,
    private readonly server: Endpoint,
    private readonly client: Endpoint,
  ) {}

  send(frame: Uint8Array, _kind: FrameKind): void {
    if (this.closed) return;
    this.batch.push(frame);
    this.batchBytes += frame.length;
    if (this.batchBytes >= this.options.wsMessageBytes) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.batch.length === 0 || this.closed || this.ws.readyState !== this.ws.OPEN) {
      this.batch = [];
      this.batchBytes = 0;
      return;
    }
    const message = this.batch.length === 1 ? this.batch[0]! : Buffer.concat(this.batch, this.batchBytes);
    this.batch = [];
    this.batchBytes = 0;
    this.tap?.wsMessage(this.server, this.client, message);
    this.ws.send(message, { binary: true }, () => this.wake());
  }

  private wake(): void {
    if (this.waiters.length > 0 && this.writable) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
  }

  get buffered(): number {
    return this.batchBytes + this.ws.bufferedAmount;
  }

  get writable(): boolean {
    return !this.closed && this.buffered < this.options.wsHighWater;
  }

  whenWritable(callback: () => void): void {
    this.waiters.push(callback);
  }

  markClosed(): void {
    this.closed = true;
    this.waiters = [];
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.waiters = [];
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
  }
}
