/**
 * UDP client transport (NDP.md §7.2): one connected `dgram` socket per session, one frame per
 * datagram. Connecting the socket makes the kernel discard datagrams from any other address, so a
 * stranger cannot inject into the session (what still arrives and is not a frame of the session is
 * counted by the session layer). The receive buffer is asked for large, because every UDP loss seen
 * on these machines was receive-buffer overflow, and read back: the kernel silently caps it.
 */
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Endpoint } from '../src/capture/tap.js';
import { NdpError } from '../src/protocol/errors.js';
import { MessageBuffer, type Transport, type TransportOptions } from './transport.js';

export interface UdpTransportOptions extends TransportOptions {
  /** SO_RCVBUF to ask for, bytes. Defaults to 8 MiB (the kernel caps it at net.core.rmem_max, doubled). */
  readonly recvBufferSize?: number;
  /** SO_SNDBUF to ask for, bytes. Defaults to 1 MiB. */
  readonly sendBufferSize?: number;
}

export const UDP_DEFAULT_RECV_BUFFER = 8 * 1024 * 1024;

export class UdpTransport implements Transport {
  readonly kind = 'udp' as const;
  readonly closed: Promise<Error | undefined>;
  /** The receive buffer the kernel granted (bytes), read back after asking. */
  readonly recvBufferSize: number;
  private readonly buffer = new MessageBuffer();
  private resolveClosed!: (error: Error | undefined) => void;
  private isClosed = false;

  private constructor(
    private readonly socket: dgram.Socket,
    readonly local: Endpoint,
    readonly remote: Endpoint,
    private readonly options: UdpTransportOptions,
  ) {
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.recvBufferSize = socket.getRecvBufferSize();
    socket.on('message', (msg) => {
      options.tap?.udp(remote, local, msg);
      this.buffer.push(msg);
    });
    socket.on('error', (err) => this.finish(err));
    socket.on('close', () => this.finish(undefined));
  }

  /** Resolves `host`, binds an ephemeral port and connects to `host:port`. */
  static async connect(host: string, port: number, options: UdpTransportOptions = {}): Promise<UdpTransport> {
    const address = isIP(host) !== 0 ? host : (await lookup(host)).address;
    const type = isIP(address) === 6 ? 'udp6' : 'udp4';
    const socket = dgram.createSocket({ type, recvBufferSize: options.recvBufferSize ?? UDP_DEFAULT_RECV_BUFFER, sendBufferSize: options.sendBufferSize ?? 1024 * 1024 });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.connect(port, address, () => {
          socket.off('error', reject);
          resolve();
        });
      });
    } catch (cause) {
      socket.close();
      throw new NdpError('NDP_ERR_UNREACHABLE', `cannot reach udp://${host}:${port}: ${(cause as Error).message}`, { cause });
    }
    const local = socket.address();
    const remote = socket.remoteAddress();
    return new UdpTransport(socket, { address: local.address, port: local.port }, { address: remote.address, port: remote.port }, options);
  }

  send(bytes: Uint8Array): void {
    if (this.isClosed) return;
    this.options.tap?.udp(this.local, this.remote, bytes);
    // ECONNREFUSED (ICMP port unreachable) arrives as an 'error' on a connected socket: it ends the transport.
    this.socket.send(bytes, (err) => {
      if (err) this.finish(err);
    });
  }

  onMessage(handler: (bytes: Uint8Array) => void): void {
    this.buffer.setHandler(handler);
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.socket.close();
    await this.closed;
  }

  private finish(error: Error | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (error !== undefined) {
      try {
        this.socket.close();
      } catch {
        // already closed by the error path
      }
    }
    this.buffer.end();
    this.resolveClosed(error);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.buffer[Symbol.asyncIterator]();
  }
}
