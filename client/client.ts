/**
 * The trainer client (issue #5): `const client = await connect(url, options)`, then
 * `for await (const batch of client.batches({ batchSize, seqLen, packing }))` or
 * `for await (const s of client.samples())`. One session at a time; when it breaks (server restart,
 * cut network, silence, BYE idle/shutdown) the client reconnects in one loop with exponential backoff
 * plus jitter and resumes from its cursor, so nothing is delivered twice and nothing is skipped
 * (NDP.md §7.7, §7.15). Status events (`client.on('status', …)`) let callers and tests count each step.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CaptureTap } from '../src/capture/tap.js';
import type { Cursor, SessionParams } from '../src/protocol/control.js';
import { NdpError } from '../src/protocol/errors.js';
import { Accounting, type AccountingSnapshot } from './accounting.js';
import type { Batch } from './batch.js';
import type { BatcherOptions } from './batcher.js';
import { EqualStepsBatcher } from './equal-steps.js';
import { HttpApi } from './http-api.js';
import { PrefetchQueue } from './prefetch-queue.js';
import { parseServerUrl, type ServerTarget } from './server-url.js';
import { Session, type AcceptInfo, type DeliveredSample, type SessionEnd, type SessionOptions, type SubscribeRequest } from './session.js';
import type { Transport } from './transport.js';
import { UdpTransport } from './udp-transport.js';
import { WsTransport } from './ws-transport.js';

export interface ReconnectOptions {
  /** Attempts after a session broke before giving up. Defaults to 10. */
  readonly maxAttempts?: number;
  /** First delay, ms; doubles per attempt. Defaults to 100. */
  readonly baseDelayMs?: number;
  /** Largest delay, ms (before jitter). Defaults to 5,000. */
  readonly maxDelayMs?: number;
  /** Random extra delay, 0..jitterMs, so many trainers do not reconnect in step. Defaults to baseDelayMs. */
  readonly jitterMs?: number;
}

export interface ConnectOptions extends SessionOptions {
  /** Session parameters (NDP.md §7.1): sources, rank, world, epochs, seed, loss, window, cursor, …. */
  readonly params?: SessionParams;
  /** Data transport when `url` is an HTTP base URL. Defaults to udp. */
  readonly transport?: 'udp' | 'ws';
  /** Bearer token (HELLO/SUBSCRIBE `token`, HTTP `Authorization`). Defaults to none. */
  readonly token?: string;
  readonly reconnect?: ReconnectOptions;
  /** Delivered samples held for a consumer that is behind; past it, no new credit. Defaults to 4,096. */
  readonly maxBufferedSamples?: number;
  /** UDP SO_RCVBUF to ask for. Defaults to 8 MiB. */
  readonly recvBufferSize?: number;
  /** WebSocket TLS: verify the server certificate. Defaults to true. */
  readonly rejectUnauthorized?: boolean;
  /** WebSocket TLS: CA certificate(s), PEM, to trust besides the system's (a self-signed server). */
  readonly ca?: string | Buffer;
  /** Capture tap called for every datagram/message. Defaults to none. */
  readonly tap?: CaptureTap;
}

export interface BatchesOptions extends BatcherOptions {
  /** Batches kept ready ahead of the consumer. Defaults to 4. */
  readonly prefetch?: number;
  /**
   * Batches per epoch on every rank (the equal-steps rule, NDP.md §7.15). Defaults to
   * ceil(samplesPerEpoch / batchSize) without packing; with packing, required for equal steps
   * (without it every batch of the stream is yielded, and counts may differ between ranks).
   */
  readonly stepsPerEpoch?: number;
  /** Turn the equal-steps rule off. Defaults to true (on) unless packing without stepsPerEpoch. */
  readonly equalSteps?: boolean;
}

/** A batch as the client yields it: the `Batch` a session consumes, plus where it came from. */
export interface ClientBatch extends Batch {
  readonly epoch: number;
  readonly step: number;
  /** Rows filled by recycling earlier samples of the epoch (equal-steps rule). */
  readonly recycledSamples: number;
  /** The stream cursor after the last real sample of this batch: resume a later process from here. */
  readonly cursor: Cursor;
}

export type ClientStatus =
  | { readonly type: 'connected'; readonly session: number; readonly transport: 'udp' | 'ws'; readonly cursor: Cursor }
  | { readonly type: 'disconnected'; readonly reason: string; readonly cursor: Cursor }
  | { readonly type: 'reconnecting'; readonly attempt: number; readonly delayMs: number }
  | { readonly type: 'reconnect-failed'; readonly attempt: number; readonly error: string }
  | { readonly type: 'resumed'; readonly session: number; readonly cursor: Cursor }
  | { readonly type: 'ended'; readonly complete: boolean };

export interface ClientStats extends AccountingSnapshot {
  readonly transport: 'udp' | 'ws';
  readonly sessions: number;
  readonly reconnects: number;
  readonly recvBufferSize: number | undefined;
  readonly cursor: Cursor;
  /** Samples delivered and waiting for the consumer now (bounded by maxBufferedSamples plus one window). */
  readonly buffered: number;
  readonly elapsedMs: number;
  /** Milliseconds the consumer waited for data, and that as a share of the time it iterated. */
  readonly stallMs: number;
  readonly stallPercent: number;
  readonly samplesPerSecond: number;
  readonly tokensPerSecond: number;
  readonly megabytesPerSecond: number;
  readonly equalSteps: { readonly recycledSamples: number; readonly overSteps: number; readonly tooLong: number; readonly truncatedTokens: number };
  /** What the server's END said it sent and injected (last session). */
  readonly server: Record<string, number> | undefined;
  /** Sum of the server END counters over every session (injected faults across resumes). */
  readonly serverTotals: Record<string, number>;
}

/** Opens the first session (fails fast when the server is unreachable or refuses) and returns the client. */
export async function connect(url: string, options: ConnectOptions = {}): Promise<NdpClient> {
  const client = new NdpClient(parseServerUrl(url, options.transport), options);
  await client.start();
  return client;
}

export class NdpClient extends EventEmitter {
  readonly accounting = new Accounting();
  /** ACCEPT of the first session: the stream's plan (params, samplesPerEpoch, samplesTotal, sources). */
  accept!: AcceptInfo;
  private session: Session | undefined;
  private readonly http: HttpApi | undefined;
  private readonly outbox: DeliveredSample[] = [];
  private wakeConsumer: (() => void) | undefined;
  private streamDone = false;
  /** Set while batches() unwinds after its consumer stopped early. */
  private producerStopped = false;
  private failure: Error | undefined;
  private closedByUser = false;
  private receiveCursor: Cursor = { epoch: 0, position: 0 };
  private consumedCursor: Cursor = { epoch: 0, position: 0 };
  private sessions = 0;
  private reconnects = 0;
  private recvBufferSize: number | undefined;
  private readonly startedAt = performance.now();
  private iterStartedAt: number | undefined;
  private stallMs = 0;
  private lastEndCounters: Record<string, number> | undefined;
  private readonly serverTotals: Record<string, number> = {};
  private equal = { recycledSamples: 0, overSteps: 0, tooLong: 0, truncatedTokens: 0 };
  private running: Promise<void> | undefined;
  private readonly maxBuffered: number;

  constructor(
    readonly target: ServerTarget,
    readonly options: ConnectOptions,
  ) {
    super();
    this.http = target.mode === 'http' ? new HttpApi(target.base, options.token) : undefined;
    this.maxBuffered = options.maxBufferedSamples ?? 4096;
    if (options.params?.cursor !== undefined) this.receiveCursor = this.consumedCursor = options.params.cursor;
  }

  /** The data transport of this client. */
  get transportKind(): 'udp' | 'ws' {
    return this.target.kind;
  }

  /** The first sample the consumer has not been given yet: resume a later process from here. */
  get cursor(): Cursor {
    return this.consumedCursor;
  }

  /** The HTTP API when the client was given an http:// URL. */
  get api(): HttpApi | undefined {
    return this.http;
  }

  /** @internal Opens the first session and starts the receive/resume loop. */
  async start(): Promise<void> {
    this.session = await this.openSession(this.receiveCursor);
    this.accept = this.session.accept;
    this.accounting.samplesExpected = this.accept.samplesTotal;
    this.emitStatus({ type: 'connected', session: this.accept.session, transport: this.target.kind, cursor: this.receiveCursor });
    this.running = this.loop();
  }

  override on(event: 'status', listener: (status: ClientStatus) => void): this;
  override on(event: string, listener: (...args: unknown[]) => void): this;
  override on(event: string, listener: (...args: never[]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  /** Delivered samples in stream order, each exactly once. One consumer per client. */
  async *samples(): AsyncGenerator<DeliveredSample> {
    for (;;) {
      const chunk = await this.nextChunk();
      if (chunk === undefined) return;
      for (const d of chunk) {
        this.consumedCursor = this.after(d.epoch, d.position);
        yield d;
      }
    }
  }

  /**
   * Batches (client/batch.ts) built from the stream, with `prefetch` kept ready; every rank yields
   * the same number per epoch (equal-steps rule). Data-stall time is measured on the consumer side.
   */
  async *batches(options: BatchesOptions): AsyncGenerator<ClientBatch> {
    const packing = options.packing === true;
    const equal = options.equalSteps ?? !(packing && options.stepsPerEpoch === undefined);
    const steps = options.stepsPerEpoch ?? (equal ? EqualStepsBatcher.stepsFor(this.accept.samplesPerEpoch, options.batchSize) : Number.MAX_SAFE_INTEGER);
    const start = this.accept.params.cursor;
    const batcher = new EqualStepsBatcher(options, { steps, fill: equal, startStep: equal ? Math.min(steps, Math.floor(start.position / options.batchSize)) : 0 });
    const queue = new PrefetchQueue<ClientBatch>(options.prefetch ?? 4);
    let lastCursor: Cursor = this.consumedCursor;
    const wrap = (b: ReturnType<EqualStepsBatcher['endEpoch']>[number]): ClientBatch => ({ ...b.batch, epoch: b.epoch, step: b.step, recycledSamples: b.recycled, cursor: lastCursor });
    const producer = (async () => {
      try {
        for (;;) {
          const chunk = await this.nextChunk(true);
          if (chunk === undefined) break;
          if (this.producerStopped) {
            // Samples taken but never batched go back, so samples() or a later batches() still get them.
            this.outbox.unshift(...chunk);
            return;
          }
          for (const d of chunk) {
            lastCursor = this.after(d.epoch, d.position);
            for (const b of batcher.push(d.sample, d.epoch)) await queue.push(wrap(b));
          }
        }
        if (this.failure !== undefined) {
          queue.fail(this.failure);
          return;
        }
        // Epochs that ended (or never started) still yield their steps: equal counts on every rank.
        for (const b of batcher.endEpoch(start.epoch)) await queue.push(wrap(b));
        while (equal && (batcher.currentEpoch ?? start.epoch) < this.accept.params.epochs) for (const b of batcher.endEpoch()) await queue.push(wrap(b));
        queue.end();
      } catch (err) {
        queue.fail(err);
      } finally {
        this.equal = { recycledSamples: this.equal.recycledSamples, overSteps: batcher.overSteps, tooLong: batcher.tooLong, truncatedTokens: batcher.truncatedTokens };
      }
    })();
    this.iterStartedAt ??= performance.now();
    let drained = false;
    try {
      for (;;) {
        const before = queue.stats.stallMs;
        const batch = await queue.take();
        this.stallMs += queue.stats.stallMs - before;
        if (batch === undefined) break;
        this.equal.recycledSamples += batch.recycledSamples;
        this.consumedCursor = batch.cursor;
        yield batch;
      }
      drained = true;
    } finally {
      if (!drained) {
        // The consumer stopped early (break, throw): release a producer blocked on a full queue or an empty outbox.
        this.producerStopped = true;
        queue.end();
        this.wakeConsumer?.();
      }
      await producer.catch(() => undefined);
      this.producerStopped = false;
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** Counters, throughput and stall so far. */
  get stats(): ClientStats {
    const snap = this.accounting.snapshot();
    const elapsedMs = performance.now() - this.startedAt;
    const iterMs = this.iterStartedAt !== undefined ? performance.now() - this.iterStartedAt : elapsedMs;
    const seconds = Math.max(elapsedMs, 1) / 1000;
    return {
      ...snap,
      transport: this.target.kind,
      sessions: this.sessions,
      reconnects: this.reconnects,
      recvBufferSize: this.recvBufferSize,
      cursor: this.consumedCursor,
      buffered: this.outbox.length,
      elapsedMs,
      stallMs: this.stallMs,
      stallPercent: iterMs > 0 ? (100 * this.stallMs) / iterMs : 0,
      samplesPerSecond: snap.samples.delivered / seconds,
      tokensPerSecond: snap.bytes.tokens / seconds,
      megabytesPerSecond: snap.bytes.received / 1e6 / seconds,
      equalSteps: this.equal,
      server: this.lastEndCounters,
      serverTotals: { ...this.serverTotals },
    };
  }

  /** Ends the session (BYE) and stops; pending iteration ends. */
  async close(): Promise<void> {
    this.closedByUser = true;
    await this.session?.close('done');
    await this.running;
    this.endStream();
  }

  /** Resolves when the stream has ended (complete or failed); rejects with the failure. */
  async finished(): Promise<void> {
    await this.running;
    if (this.failure !== undefined) throw this.failure;
  }

  private emitStatus(status: ClientStatus): void {
    this.emit('status', status);
  }

  private after(epoch: number, position: number): Cursor {
    return position + 1 < this.accept.samplesPerEpoch ? { epoch, position: position + 1 } : { epoch: epoch + 1, position: 0 };
  }

  private async openSession(cursor: Cursor): Promise<Session> {
    const params: SessionParams = { ...this.options.params, cursor };
    let transport: Transport;
    let request: SubscribeRequest;
    const target = this.target;
    if (target.mode === 'http') {
      const opened = await this.http!.openSession(params);
      const endpoint = target.kind === 'udp' ? opened.endpoints.udp : opened.endpoints.ws;
      if (endpoint === undefined) throw new NdpError('NDP_ERR_REFUSED', `server offers no ${target.kind} endpoint`);
      const url = new URL(endpoint);
      // The endpoint's host may be the server's bind address (0.0.0.0): reach it by the name we used.
      url.hostname = target.host.includes(':') ? `[${target.host}]` : target.host;
      transport = target.kind === 'udp' ? await this.udp(target.host, Number(url.port)) : await this.ws(url.toString());
      request = { session: opened.session, ticket: opened.ticket };
    } else {
      transport = target.kind === 'udp' ? await this.udp(target.host, target.port) : await this.ws(target.url);
      request = { params };
    }
    const sink = {
      deliver: (d: DeliveredSample) => this.deliver(d),
      dropped: (epoch: number, position: number, reason: string) => {
        this.accounting.dropSample(reason as never);
        this.receiveCursor = this.after(epoch, position);
      },
      backpressured: () => this.outbox.length >= this.maxBuffered,
    };
    try {
      const session = await Session.open(transport, request, this.accounting, sink, this.options);
      this.sessions++;
      return session;
    } catch (err) {
      await transport.close().catch(() => undefined);
      throw err;
    }
  }

  private async udp(host: string, port: number): Promise<Transport> {
    const t = await UdpTransport.connect(host, port, { ...(this.options.tap ? { tap: this.options.tap } : {}), ...(this.options.recvBufferSize ? { recvBufferSize: this.options.recvBufferSize } : {}) });
    this.recvBufferSize = t.recvBufferSize;
    return t;
  }

  private async ws(url: string): Promise<Transport> {
    return WsTransport.connect(url, {
      ...(this.options.tap ? { tap: this.options.tap } : {}),
      ...(this.options.token !== undefined ? { bearer: this.options.token } : {}),
      ...(this.options.rejectUnauthorized !== undefined ? { rejectUnauthorized: this.options.rejectUnauthorized } : {}),
      ...(this.options.ca !== undefined ? { ca: this.options.ca } : {}),
    });
  }

  private deliver(d: DeliveredSample): void {
    this.accounting.samplesDelivered++;
    this.accounting.tokensDelivered += d.sample.tokens.length;
    this.receiveCursor = this.after(d.epoch, d.position);
    this.outbox.push(d);
    this.wakeConsumer?.();
  }

  /** Everything delivered and not yet taken (at least one sample), or undefined at the end of the stream. */
  private async nextChunk(measured = false): Promise<DeliveredSample[] | undefined> {
    if (!measured) this.iterStartedAt ??= performance.now();
    if (this.outbox.length === 0 && !this.streamDone) {
      const start = performance.now();
      while (this.outbox.length === 0 && !this.streamDone) {
        if (measured && this.producerStopped) return undefined;
        await new Promise<void>((resolve) => {
          this.wakeConsumer = resolve;
        });
      }
      if (!measured) this.stallMs += performance.now() - start;
    }
    if (this.outbox.length === 0) {
      if (this.failure !== undefined && !measured) throw this.failure;
      return undefined;
    }
    const wasBackpressured = this.outbox.length >= this.maxBuffered;
    const chunk = this.outbox.splice(0);
    if (wasBackpressured) this.session?.grantCredit();
    return chunk;
  }

  private endStream(): void {
    this.streamDone = true;
    this.wakeConsumer?.();
  }

  /** Waits for each session to end and resumes until the stream is complete, or gives up. */
  private async loop(): Promise<void> {
    const reconnect = this.options.reconnect ?? {};
    const maxAttempts = reconnect.maxAttempts ?? 10;
    const base = reconnect.baseDelayMs ?? 100;
    const maxDelay = reconnect.maxDelayMs ?? 5000;
    const jitter = reconnect.jitterMs ?? base;
    // Attempts count across sessions that made no progress, so a server that accepts and then says
    // nothing (or dies again at once) cannot keep the client reconnecting forever.
    let attempt = 0;
    let cursorAtResume = fmt(this.receiveCursor);
    try {
      for (;;) {
        const session = this.session!;
        const end = await session.ended;
        this.collectEnd(session);
        if (end.status === 'complete' || this.atEnd()) {
          this.accounting.streamEnded = true;
          this.emitStatus({ type: 'ended', complete: true });
          return;
        }
        if (this.closedByUser) {
          this.emitStatus({ type: 'ended', complete: false });
          return;
        }
        await session.transport.close().catch(() => undefined);
        const reason = describe(end);
        if (end.status === 'bye' && end.reason === 'deleted') throw new NdpError('NDP_ERR_STREAM_ENDED_EARLY', `the server deleted the session (${reason}) at cursor ${fmt(this.receiveCursor)}`);
        this.emitStatus({ type: 'disconnected', reason, cursor: this.receiveCursor });
        if (fmt(this.receiveCursor) !== cursorAtResume) attempt = 0;
        let resumed: Session | undefined;
        let lastError: Error | undefined;
        while (++attempt <= maxAttempts && !this.closedByUser) {
          const delayMs = Math.min(maxDelay, base * 2 ** (attempt - 1)) + Math.random() * jitter;
          this.emitStatus({ type: 'reconnecting', attempt, delayMs });
          await sleep(delayMs);
          try {
            resumed = await this.openSession(this.receiveCursor);
            break;
          } catch (err) {
            lastError = err as Error;
            this.emitStatus({ type: 'reconnect-failed', attempt, error: (err as Error).message });
            // A refusal that will not change by retrying (bad token, bad parameters) ends the stream now.
            if (/NDP_ERR_(UNAUTHORIZED|BAD_PARAMS|UNKNOWN_DATASET)/.test((err as Error).message)) break;
          }
        }
        if (resumed === undefined) {
          if (this.closedByUser) return;
          throw new NdpError('NDP_ERR_STREAM_ENDED_EARLY', `session ended (${reason}) at cursor ${fmt(this.receiveCursor)} and could not be resumed in ${maxAttempts} attempts: ${lastError?.message ?? 'no progress'}`, { cause: lastError });
        }
        this.reconnects++;
        cursorAtResume = fmt(this.receiveCursor);
        this.session = resumed;
        this.emitStatus({ type: 'resumed', session: resumed.accept.session, cursor: this.receiveCursor });
      }
    } catch (err) {
      this.failure = err as Error;
      this.emitStatus({ type: 'ended', complete: false });
    } finally {
      this.endStream();
    }
  }

  private atEnd(): boolean {
    return this.receiveCursor.epoch >= this.accept.params.epochs;
  }

  private collectEnd(session: Session): void {
    if (session.endCounters === undefined) return;
    this.lastEndCounters = session.endCounters;
    for (const [k, v] of Object.entries(session.endCounters)) if (typeof v === 'number') this.serverTotals[k] = (this.serverTotals[k] ?? 0) + v;
  }
}

function describe(end: SessionEnd): string {
  switch (end.status) {
    case 'bye':
      return `BYE ${end.reason}${end.code ? ` ${end.code}` : ''}`;
    case 'closed':
      return `connection closed${end.error ? `: ${end.error.message}` : ''}`;
    case 'silent':
      return 'server silent (NDP_ERR_SERVER_SILENT)';
    case 'error':
      return end.error.message;
    case 'complete':
      return 'complete';
  }
}

function fmt(c: Cursor): string {
  return `{epoch ${c.epoch}, position ${c.position}}`;
}
