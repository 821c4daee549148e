/**
 * Server options and their defaults (NDP.md §7.13). Every limit the server enforces is here, with
 * the default the documentation promises.
 */
import { DEFAULT_PORTS } from '../src/protocol/registry.js';
import type { CaptureTap } from '../src/capture/tap.js';
import type { RouteRule } from './router.js';

const MiB = 1024 * 1024;

export interface InjectOptions {
  /** Probability a first transmission is not sent. Defaults to 0. */
  readonly drop: number;
  /** Probability a first transmission has one bit flipped. Defaults to 0. */
  readonly corrupt: number;
  /** Seed of the draws. Defaults to 0. */
  readonly seed: number;
}

export interface ServerOptions {
  /** Address every listener binds. Defaults to 127.0.0.1 (loopback only). */
  readonly host: string;
  /** UDP port (0 = any free port); null disables UDP. Defaults to 7400. */
  readonly udpPort: number | null;
  /** WebSocket port; null disables WebSocket. Defaults to 7401. */
  readonly wsPort: number | null;
  /** HTTP control-plane port; null disables it. Defaults to 7402. */
  readonly httpPort: number | null;
  /** Shared secret every session must present. Defaults to none (open). */
  readonly token: string | undefined;
  /** PEM certificate and key: WebSocket becomes wss. Defaults to none. */
  readonly tls: { readonly cert: Uint8Array; readonly key: Uint8Array } | undefined;
  readonly routes: readonly RouteRule[];
  /** Server-wide fault injection, the default of every session. Defaults to none. */
  readonly inject: InjectOptions;
  /** Defaults to 64. */
  readonly maxSessions: number;
  /** Rate of a session that names none, bytes/s. Defaults to 50,000,000. */
  readonly sessionRate: number;
  /** Defaults to 1,000,000,000 B/s. */
  readonly maxSessionRate: number;
  /** All sessions together. Defaults to 2,000,000,000 B/s. */
  readonly maxTotalRate: number;
  /** Defaults to 8192 frames. */
  readonly maxWindow: number;
  /** Defaults to 65,507 bytes. */
  readonly maxDatagram: number;
  /** Retransmit buffer per session. Defaults to 16 MiB. */
  readonly retransmitBytes: number;
  /** WebSocket bytes queued per connection before the server stops writing. Defaults to 4 MiB. */
  readonly wsHighWater: number;
  /** Frames coalesced into one WebSocket message, in bytes. Defaults to 256 KiB. */
  readonly wsMessageBytes: number;
  /** Largest client WebSocket message. Defaults to 64 KiB. */
  readonly wsMaxMessage: number;
  /**
   * HELLO/SUBSCRIBE per source IP per 10 s. Defaults to 128: 16 trainers on one host take 32 for one
   * clean handshake each, and retries or reconnects must still fit.
   */
  readonly maxHandshakes: number;
  /** Unvalidated addresses tracked. Defaults to 4096. */
  readonly maxUnvalidated: number;
  /**
   * TCP connections held at once by each TCP listener (the WebSocket port, upgraded or not, and the
   * HTTP control plane); more are closed as they are accepted and counted `too_many_connections`.
   * Defaults to 1024: 16× the default --max-sessions, room for reconnects and control-plane polling
   * while a connection flood stays bounded.
   */
  readonly maxConnections: number;
  /** Defaults to 15,000 ms. */
  readonly idleTimeoutMs: number;
  /** Defaults to 1,000 ms. */
  readonly heartbeatMs: number;
  /** WebSocket connection without SUBSCRIBE. Defaults to 10,000 ms. */
  readonly handshakeTimeoutMs: number;
  /** HTTP-opened session not attached. Defaults to 30,000 ms. */
  readonly ticketTtlMs: number;
  /** Cookie validity. Defaults to 30,000 ms. */
  readonly cookieLifetimeMs: number;
  /** UDP SO_RCVBUF requested. Defaults to 8 MiB. */
  readonly recvBufferBytes: number;
  /**
   * Samples read ahead per session: reads overlap so file latency does not pace the stream.
   * Defaults to 256 (bench/server-throughput.ts: 16 held one trainer to ~10k samples/s).
   */
  readonly readAhead: number;
  /** Bytes of frames produced ahead of sending per session. Defaults to 4 MiB. */
  readonly readAheadBytes: number;
  /** Optional packet-capture tap, called for every datagram and message. */
  readonly tap: CaptureTap | undefined;
}

export const DEFAULT_SERVER_OPTIONS: ServerOptions = Object.freeze({
  host: '127.0.0.1',
  udpPort: DEFAULT_PORTS.udp,
  wsPort: DEFAULT_PORTS.ws,
  httpPort: DEFAULT_PORTS.http,
  token: undefined,
  tls: undefined,
  routes: [],
  inject: { drop: 0, corrupt: 0, seed: 0 },
  maxSessions: 64,
  sessionRate: 50_000_000,
  maxSessionRate: 1_000_000_000,
  maxTotalRate: 2_000_000_000,
  maxWindow: 8192,
  maxDatagram: 65_507,
  retransmitBytes: 16 * MiB,
  wsHighWater: 4 * MiB,
  wsMessageBytes: 256 * 1024,
  wsMaxMessage: 64 * 1024,
  maxHandshakes: 128,
  maxUnvalidated: 4096,
  maxConnections: 1024,
  idleTimeoutMs: 15_000,
  heartbeatMs: 1_000,
  handshakeTimeoutMs: 10_000,
  ticketTtlMs: 30_000,
  cookieLifetimeMs: 30_000,
  recvBufferBytes: 8 * MiB,
  readAhead: 256,
  readAheadBytes: 4 * MiB,
  tap: undefined,
});

export function resolveServerOptions(options: Readonly<Partial<ServerOptions>> = {}): ServerOptions {
  const merged = { ...DEFAULT_SERVER_OPTIONS, ...stripUndefined(options) };
  return merged;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
