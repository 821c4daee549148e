/**
 * Opens, finds and closes sessions for every front end (HTTP, UDP SUBSCRIBE, WebSocket SUBSCRIBE),
 * so the rules are the same everywhere: the token, the session limit, parameter resolution,
 * ticket attach and SUBSCRIBE retries (NDP.md §7.3, §7.10, §7.13).
 */
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { CONTROL } from '../src/protocol/registry.js';
import type { ControlMessage } from '../src/protocol/control.js';
import { NdpError, isNdpError } from '../src/protocol/errors.js';
import type { Catalog } from './catalog.js';
import type { ServerMetrics } from './metrics.js';
import type { ServerOptions } from './options.js';
import { resolveParams } from './params.js';
import { Router } from './router.js';
import { Session, type SessionLink } from './session.js';
import { SessionPlan } from './session-plan.js';
import { TokenBucket, burstFor } from './token-bucket.js';

/** A SUBSCRIBE as it arrived: every field unchecked. */
export interface UntrustedSubscribe {
  readonly nonce?: unknown;
  readonly token?: unknown;
  readonly session?: unknown;
  readonly ticket?: unknown;
  readonly params?: unknown;
}

/** Closed sessions kept for `GET /v1/sessions/:id` after they end. */
const CLOSED_KEPT = 64;

export class SessionManager {
  private readonly sessions = new Map<number, Session>();
  private readonly closedInfo = new Map<number, Record<string, unknown>>();
  /** `peer#nonce` → session id: a repeated SUBSCRIBE gets the same ACCEPT. */
  private readonly byNonce = new Map<string, number>();
  readonly router: Router;
  readonly totalBucket: TokenBucket;
  private accepting = true;
  private readonly tokenDigest: Buffer | undefined;

  constructor(
    readonly catalog: Catalog,
    readonly options: ServerOptions,
    readonly metrics: ServerMetrics,
    private readonly captureSink?: (frame: Uint8Array) => void,
  ) {
    this.router = new Router(options.routes);
    // Sized for the largest datagram a session may use (2^16) so any session's frame can go.
    this.totalBucket = new TokenBucket(options.maxTotalRate, burstFor(options.maxTotalRate, 65_536));
    this.tokenDigest = options.token === undefined ? undefined : digest(options.token);
    this.updateGauge();
  }

  get size(): number {
    return this.sessions.size;
  }

  get isAccepting(): boolean {
    return this.accepting;
  }

  /** True when the server has no token or `token` is it (constant-time compare). */
  tokenOk(token: unknown): boolean {
    if (this.tokenDigest === undefined) return true;
    if (typeof token !== 'string') return false;
    return timingSafeEqual(digest(token), this.tokenDigest);
  }

  /** Opens a session (pending until a transport attaches). Throws NdpError with the refusal's code. */
  open(rawParams: unknown, transport: 'udp' | 'ws' | 'any', withTicket: boolean): Session {
    if (!this.accepting) throw new NdpError('NDP_ERR_SHUTDOWN', 'the server is shutting down');
    if (this.sessions.size >= this.options.maxSessions) throw new NdpError('NDP_ERR_TOO_MANY_SESSIONS', `the server holds its limit of ${this.options.maxSessions} sessions`);
    const resolved = resolveParams(rawParams, this.catalog, this.options, transport);
    let plan: SessionPlan;
    try {
      plan = new SessionPlan(
        resolved.datasets.map((d, j) => ({ samples: d.sampleCount, weight: resolved.weights[j] })),
        resolved.params,
      );
    } catch (err) {
      throw new NdpError('NDP_ERR_BAD_PARAMS', (err as Error).message);
    }
    const { epoch, position } = resolved.params.cursor;
    if (position > plan.samplesPerEpoch || (epoch === resolved.params.epochs && position !== 0)) {
      throw new NdpError('NDP_ERR_BAD_PARAMS', `cursor {epoch ${epoch}, position ${position}} is outside ${resolved.params.epochs} epochs of ${plan.samplesPerEpoch} samples`);
    }
    let id: number;
    do id = randomInt(1, 2 ** 32 - 1);
    while (this.sessions.has(id) || this.closedInfo.has(id));
    const session = new Session({
      id,
      params: resolved.params,
      datasets: resolved.datasets,
      plan,
      options: this.options,
      metrics: this.metrics,
      totalBucket: this.totalBucket,
      router: this.router,
      captureSink: this.captureSink,
      ticket: withTicket ? randomBytes(16).toString('hex') : undefined,
      onClosed: (s) => this.forget(s),
    });
    this.sessions.set(id, session);
    this.metrics.sessionsOpened.inc();
    this.updateGauge();
    return session;
  }

  get(id: number): Session | undefined {
    return this.sessions.get(id);
  }

  /** Info of a held or recently closed session. */
  info(id: number): Record<string, unknown> | undefined {
    return this.sessions.get(id)?.info() ?? this.closedInfo.get(id);
  }

  list(): Array<Record<string, unknown>> {
    return [...this.sessions.values()].map((s) => {
      const info = s.info();
      return { session: info.session, state: info.state, transport: info.transport, peer: info.peer, cursor: info.cursor, sent: info.sent };
    });
  }

  /**
   * Handles a SUBSCRIBE that passed the transport's own checks (cookie on UDP). Returns the reply to
   * send when there is no session to send it (REJECT); on success the session sends ACCEPT itself.
   */
  subscribe(message: UntrustedSubscribe, link: SessionLink, transport: 'udp' | 'ws'): { session?: Session; reject?: ControlMessage } {
    const nonce = typeof message.nonce === 'number' && Number.isInteger(message.nonce) && message.nonce >= 0 ? message.nonce : 0;
    const key = `${link.peer}#${nonce}`;
    const repeated = this.byNonce.get(key);
    if (repeated !== undefined) {
      const session = this.sessions.get(repeated);
      if (session !== undefined && session.state !== 'closed') {
        session.repeatAccept();
        return { session };
      }
    }
    try {
      if (!this.tokenOk(message.token)) throw new NdpError('NDP_ERR_UNAUTHORIZED', message.token === undefined ? 'this server needs a token' : 'wrong token');
      let session: Session;
      if (message.session !== undefined || message.ticket !== undefined) {
        const held = typeof message.session === 'number' ? this.sessions.get(message.session) : undefined;
        if (held === undefined || held.state !== 'pending' || held.ticket === undefined || typeof message.ticket !== 'string' || !sameText(message.ticket, held.ticket)) {
          throw new NdpError('NDP_ERR_BAD_TICKET', 'no pending session with that id and ticket (wrong, expired or already attached)');
        }
        if (held.params.datagram > (transport === 'udp' ? 65_507 : Infinity)) throw new NdpError('NDP_ERR_BAD_PARAMS', 'datagram too large for UDP');
        session = held;
      } else {
        session = this.open(message.params, transport, false);
      }
      this.byNonce.set(key, session.id);
      session.attach(link, nonce);
      this.metrics.handshakes.inc({ result: 'accept' });
      this.updateGauge();
      return { session };
    } catch (err) {
      if (!isNdpError(err)) throw err;
      this.metrics.handshakes.inc({ result: 'reject' });
      return { reject: { t: CONTROL.REJECT, code: err.code, message: err.message, nonce } };
    }
  }

  private forget(session: Session): void {
    this.sessions.delete(session.id);
    for (const [key, id] of this.byNonce) if (id === session.id) this.byNonce.delete(key);
    this.closedInfo.set(session.id, session.info());
    if (this.closedInfo.size > CLOSED_KEPT) this.closedInfo.delete(this.closedInfo.keys().next().value!);
    this.updateGauge();
  }

  updateGauge(): void {
    const counts: Record<string, number> = { pending: 0, open: 0, ended: 0 };
    for (const s of this.sessions.values()) if (s.state in counts) counts[s.state]! += 1;
    for (const [state, n] of Object.entries(counts)) this.metrics.sessions.set({ state }, n);
  }

  /** Stops accepting and ends every session with BYE `shutdown` and its cursor (NDP.md §7.9). */
  shutdown(): void {
    this.accepting = false;
    for (const session of [...this.sessions.values()]) session.close('shutdown', 'NDP_ERR_SHUTDOWN');
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function sameText(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}
