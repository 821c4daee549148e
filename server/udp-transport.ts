/**
 * The UDP front end (NDP.md §7.2, §7.3): one socket for every UDP session. Unvalidated addresses get
 * a stateless cookie and never more than 3× the bytes they sent; handshakes are rate-limited per IP;
 * every datagram that is not a well-formed client CONTROL frame is dropped and counted by reason.
 * Sessions send through a UdpLink, which tracks the bytes libuv still holds so a session cannot queue
 * without bound.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import type { CaptureTap, Endpoint } from '../src/capture/tap.js';
import { decodeControl, encodeControlFrame, type ControlMessage } from '../src/protocol/control.js';
import { isNdpError, type NdpErrorCode } from '../src/protocol/errors.js';
import { decodeFrame } from '../src/protocol/frame.js';
import { CONTROL, TYP } from '../src/protocol/registry.js';
import { AddressGuard } from './address-guard.js';
import { dispatchSessionMessage } from './control-dispatch.js';
import { CookieJar } from './cookie.js';
import type { FrameKind, ServerMetrics } from './metrics.js';
import type { ServerOptions } from './options.js';
import type { SessionLink } from './session.js';
import type { SessionManager, UntrustedSubscribe } from './session-manager.js';

/** A HELLO datagram must be at least this long (NDP.md §6.1), so the COOKIE fits 3× of it. */
export const MIN_HELLO_BYTES = 256;

export class UdpFrontEnd {
  private socket: Socket | undefined;
  private local: Endpoint = { address: '', port: 0 };
  readonly guard: AddressGuard;
  readonly cookies: CookieJar;
  /** Sessions attached per peer: a peer that holds one is validated. */
  private readonly attached = new Map<string, number>();
  /** SO_RCVBUF as granted by the kernel (it may cap the request). */
  recvBufferBytes = 0;

  constructor(
    private readonly manager: SessionManager,
    private readonly metrics: ServerMetrics,
    private readonly options: ServerOptions,
    private readonly tap: CaptureTap | undefined,
  ) {
    this.guard = new AddressGuard(options.maxUnvalidated, options.maxHandshakes);
    this.cookies = new CookieJar(options.cookieLifetimeMs);
  }

  async listen(host: string, port: number): Promise<number> {
    const socket = createSocket({ type: isIP(host) === 6 ? 'udp6' : 'udp4' });
    this.socket = socket;
    socket.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
    // Per-datagram errors (ICMP unreachable surfaced on send) must not kill the server.
    socket.on('error', () => this.metrics.drop('NDP_ERR_SEND_FAILED'));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    try {
      socket.setRecvBufferSize(this.options.recvBufferBytes);
      socket.setSendBufferSize(this.options.recvBufferBytes);
    } catch {
      // The kernel refused the size outright; what it grants is read back below either way.
    }
    this.recvBufferBytes = socket.getRecvBufferSize();
    const address = socket.address();
    this.local = { address: address.address, port: address.port };
    return address.port;
  }

  private peerOf(rinfo: RemoteInfo): string {
    return `udp:${rinfo.address}:${rinfo.port}`;
  }

  private drop(code: NdpErrorCode): void {
    this.metrics.drop(code);
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    this.metrics.datagramsReceived.inc({ transport: 'udp' });
    this.tap?.udp({ address: rinfo.address, port: rinfo.port }, this.local, msg);
    const peer = this.peerOf(rinfo);
    const validated = this.attached.has(peer);
    if (!validated) this.guard.received(peer, msg.length);
    let message: ControlMessage;
    try {
      const frame = decodeFrame(msg);
      if (!frame.crcOk) return this.drop('NDP_ERR_BAD_CRC');
      if (frame.typ !== TYP.CONTROL) return this.drop('NDP_ERR_UNEXPECTED_FRAME');
      message = decodeControl(frame.payload);
    } catch (err) {
      if (isNdpError(err)) return this.drop(err.code);
      throw err;
    }
    const untrusted = message as unknown as Record<string, unknown> & { t: number };
    if (message.t === CONTROL.HELLO) return this.onHello(untrusted, msg.length, rinfo, peer, validated);
    if (message.t === CONTROL.SUBSCRIBE) return this.onSubscribe(untrusted, rinfo, peer, validated);
    dispatchSessionMessage(this.manager, this.metrics, untrusted, peer);
  }

  private onHello(message: Record<string, unknown>, size: number, rinfo: RemoteInfo, peer: string, validated: boolean): void {
    if (!this.guard.allowHandshake(rinfo.address)) return this.drop('NDP_ERR_HANDSHAKE_RATE');
    if (size < MIN_HELLO_BYTES) return this.drop('NDP_ERR_SHORT_HELLO');
    this.metrics.handshakes.inc({ result: 'hello' });
    let reply: ControlMessage;
    if (!this.manager.tokenOk(message.token)) reply = { t: CONTROL.REJECT, code: 'NDP_ERR_UNAUTHORIZED', message: message.token === undefined ? 'this server needs a token' : 'wrong token' };
    else if (!this.manager.isAccepting) reply = { t: CONTROL.REJECT, code: 'NDP_ERR_SHUTDOWN', message: 'the server is shutting down' };
    else reply = { t: CONTROL.COOKIE, cookie: this.cookies.mint(rinfo.address, rinfo.port), lifetimeMs: this.options.cookieLifetimeMs };
    this.reply(reply, rinfo, peer, validated);
  }

  private onSubscribe(message: Record<string, unknown>, rinfo: RemoteInfo, peer: string, validated: boolean): void {
    if (!this.guard.allowHandshake(rinfo.address)) return this.drop('NDP_ERR_HANDSHAKE_RATE');
    const nonce = typeof message.nonce === 'number' ? message.nonce : undefined;
    if (!this.cookies.verify(message.cookie, rinfo.address, rinfo.port)) {
      this.metrics.handshakes.inc({ result: 'bad_cookie' });
      const reject: ControlMessage = { t: CONTROL.REJECT, code: 'NDP_ERR_BAD_COOKIE', message: 'missing, expired or foreign cookie: send HELLO first' };
      return this.reply(nonce === undefined ? reject : { ...reject, nonce }, rinfo, peer, validated);
    }
    const link = new UdpLink(this, rinfo.address, rinfo.port, peer);
    const result = this.manager.subscribe(message as UntrustedSubscribe, link, 'udp');
    if (result.session?.link === link) this.attached.set(peer, (this.attached.get(peer) ?? 0) + 1);
    // The cookie proved the address: the reply is not limited by the 3× budget.
    if (result.reject !== undefined) this.reply(result.reject, rinfo, peer, true);
  }

  /** Sends a control reply; to an unvalidated peer only within its 3× budget. */
  private reply(message: ControlMessage, rinfo: RemoteInfo, peer: string, validated: boolean): void {
    const frame = encodeControlFrame(message);
    if (!validated && !this.guard.trySend(peer, frame.length)) return this.drop('NDP_ERR_AMPLIFICATION');
    this.sendRaw(frame, rinfo.address, rinfo.port);
    this.metrics.sent('udp', 'control', frame.length);
  }

  /** @internal used by UdpLink */
  sendRaw(frame: Uint8Array, address: string, port: number, done?: (err: Error | null) => void): void {
    const socket = this.socket;
    if (socket === undefined) return;
    this.tap?.udp(this.local, { address, port }, frame);
    socket.send(frame, port, address, done);
  }

  /** @internal a link's session ended */
  detach(peer: string): void {
    const n = (this.attached.get(peer) ?? 0) - 1;
    if (n > 0) this.attached.set(peer, n);
    else this.attached.delete(peer);
  }

  get highWater(): number {
    return this.options.wsHighWater;
  }

  async close(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    if (socket === undefined) return;
    await new Promise<void>((resolve) => {
      try {
        socket.close(() => resolve());
      } catch {
        // A socket whose bind failed is already closed.
        resolve();
      }
    });
  }
}

/** One session's path to its UDP peer. */
class UdpLink implements SessionLink {
  readonly transport = 'udp' as const;
  private inFlight = 0;
  /** Bounded: a session waits for writability once at a time (Session.waitingWritable), so one entry per session. */
  private waiters: Array<() => void> = [];
  private closed = false;

  constructor(
    private readonly front: UdpFrontEnd,
    private readonly address: string,
    private readonly port: number,
    readonly peer: string,
  ) {}

  send(frame: Uint8Array, _kind: FrameKind): void {
    if (this.closed && _kind !== 'control') return;
    const size = frame.length;
    this.inFlight += size;
    this.front.sendRaw(frame, this.address, this.port, () => {
      this.inFlight -= size;
      if (this.waiters.length > 0 && this.writable) {
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      }
    });
  }

  get buffered(): number {
    return this.inFlight;
  }

  get writable(): boolean {
    return this.inFlight < this.front.highWater;
  }

  whenWritable(callback: () => void): void {
    this.waiters.push(callback);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.waiters = [];
    this.front.detach(this.peer);
  }
}
