/**
 * One session (NDP.md §7): the engine both transports drive. It walks the session's order
 * (session-plan.ts), reads sample bodies ahead, routes and segments them, and sends frames through a
 * SessionLink within the client's credit (§7.5) and the session's and server's rates, keeps what a
 * `repair` session may have to resend (§7.6), injects faults for experiments (§7.12), and ends with
 * END / BYE carrying the cursor (§7.7, §7.9).
 */
import { encodeControlFrame, type AcceptFields, type ControlMessage, type Cursor, type ResolvedSessionParams, type SourceInfo } from '../src/protocol/control.js';
import { crc16 } from '../src/protocol/crc16.js';
import type { NdpErrorCode } from '../src/protocol/errors.js';
import { CONTROL, FRAME_CRC_BYTES, FRAME_HEADER_BYTES, SEGMENT_FLAG, TYP } from '../src/protocol/registry.js';
import { segmentSample } from '../src/protocol/segmenter.js';
import type { SampleSource } from '../src/dataset/sample.js';
import { FaultInjector } from './fault-injector.js';
import type { FrameKind, ServerMetrics, TransportName } from './metrics.js';
import type { ServerOptions } from './options.js';
import { ROUTED, RetransmitBuffer } from './retransmit-buffer.js';
import type { Router } from './router.js';
import type { PlannedSample, SessionPlan } from './session-plan.js';
import { TokenBucket, burstFor } from './token-bucket.js';

/** What a transport gives a session to send through. */
export interface SessionLink {
  readonly transport: TransportName;
  /** `udp:HOST:PORT` or `ws:HOST:PORT`: who the session belongs to. */
  readonly peer: string;
  /** Hands one whole frame to the transport (which may coalesce frames into one message). */
  send(frame: Uint8Array, kind: FrameKind): void;
  /** Bytes the transport holds for this session and has not yet handed to the kernel. */
  readonly buffered: number;
  /** False while the transport is above its high-water mark. */
  readonly writable: boolean;
  /** Calls `callback` once, when the transport is writable again. */
  whenWritable(callback: () => void): void;
  /** The session is over: release the transport's part (WebSocket: close with `code`, `reason`). */
  close(code: number, reason: string): void;
}

export type SessionState = 'pending' | 'open' | 'ended' | 'closed';

/** WebSocket close code for each way a session ends (NDP.md §7.2). */
const CLOSE_CODES: Record<string, number> = { complete: 1000, done: 1000, client: 1000, shutdown: 1001, idle: 4408, deleted: 4410, error: 4500 };

interface ReadyFrame {
  readonly seq: number;
  /** Bytes of the frame as produced (before routing), for the read-ahead budget. */
  readonly size: number;
  /** null: a routing rule dropped it. */
  readonly frame: Uint8Array | null;
  /** Set on the last fragment of its sample. */
  readonly sample?: { readonly source: number; readonly lastSeq: number; readonly firstSeq: number };
}

interface SampleSpan {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly epoch: number;
  readonly position: number;
}

interface PendingRead {
  readonly planned: PlannedSample;
  body?: Uint8Array;
  error?: Error;
}

export interface SessionInit {
  readonly id: number;
  readonly params: ResolvedSessionParams;
  readonly datasets: readonly SampleSource[];
  readonly plan: SessionPlan;
  readonly options: ServerOptions;
  readonly metrics: ServerMetrics;
  readonly totalBucket: TokenBucket;
  readonly router: Router;
  /** Frames a `capture` routing rule selected. */
  readonly captureSink?: ((frame: Uint8Array) => void) | undefined;
  readonly ticket?: string | undefined;
  /** Called once the session is closed, whatever the reason. */
  readonly onClosed: (session: Session) => void;
}

export class Session {
  readonly id: number;
  readonly params: ResolvedSessionParams;
  readonly plan: SessionPlan;
  readonly ticket: string | undefined;
  readonly createdAt = Date.now();
  state: SessionState = 'pending';
  link: SessionLink | undefined;
  /** SUBSCRIBE nonce the ACCEPT answered (repeats get the same ACCEPT). */
  nonce: number | undefined;

  private readonly init: SessionInit;
  private readonly iterator: Iterator<PlannedSample>;
  private upcoming: PlannedSample | undefined;
  private readonly reads: PendingRead[] = [];
  private ready: ReadyFrame[] = [];
  private readyHead = 0;
  private spans: SampleSpan[] = [];
  private spansHead = 0;
  private samplesAhead = 0;
  /** Bytes of produced frames not yet through their first transmission. */
  private readyBytes = 0;
  private nextSeq = 0;
  /** Every seq below this had its first transmission (or was routed away / injected away). */
  private sentSeq = 0;
  private ack = 0;
  private window: number;
  private readonly rtx: RetransmitBuffer | undefined;
  private rtxQueue: number[] = [];
  private readonly rtxQueued = new Set<number>();
  private readonly injector: FaultInjector;
  private readonly bucket: TokenBucket;
  private pumping = false;
  private waitingWritable = false;
  private rateTimer: NodeJS.Timeout | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private stalled = false;
  private lastHeard = Date.now();
  private lastSent = Date.now();
  private endedAt = 0;
  private readonly counters = {
    frames: 0, bytes: 0, samples: 0, retransmittedFrames: 0, retransmittedBytes: 0, routedDrop: 0,
    goneEvicted: 0, goneRouted: 0, goneLossy: 0, creditStalls: 0, staleCredits: 0,
  };
  private readonly perSource: number[];
  private clientStats: Record<string, number> = {};

  constructor(init: SessionInit) {
    this.init = init;
    this.id = init.id;
    this.params = init.params;
    this.plan = init.plan;
    this.ticket = init.ticket;
    this.window = init.params.window;
    this.rtx = init.params.loss === 'repair' ? new RetransmitBuffer(init.options.retransmitBytes) : undefined;
    this.injector = new FaultInjector(init.params.inject.drop, init.params.inject.corrupt, init.params.inject.seed);
    this.bucket = new TokenBucket(init.params.rate, burstFor(init.params.rate, init.params.datagram));
    this.perSource = init.datasets.map(() => 0);
    this.iterator = init.plan.iterate(init.params.cursor, init.params.epochs);
    this.advanceUpcoming();
    const period = Math.max(20, Math.min(500, init.options.heartbeatMs / 2));
    this.tickTimer = setInterval(() => this.tick(), period);
    this.tickTimer.unref();
  }

  private advanceUpcoming(): void {
    const next = this.iterator.next();
    this.upcoming = next.done === true ? undefined : next.value;
  }

  /** Sources as ACCEPT reports them, with realised shares. */
  sourceInfo(): SourceInfo[] {
    const M = this.plan.samplesPerEpoch;
    return this.init.datasets.map((d, j) => ({
      dataset: d.name,
      src: d.src,
      weight: this.params.sources[j]?.weight ?? this.plan.shardSizes[j]!,
      samples: d.sampleCount,
      shard: this.plan.shardSizes[j]!,
      samplesPerEpoch: this.plan.quotas[j]!,
      share: M === 0 ? 0 : this.plan.quotas[j]! / M,
    }));
  }

  /** The fields ACCEPT and the `POST /v1/sessions` reply share (NDP.md §6.1, §7.10). */
  acceptFields(): AcceptFields {
    const first = this.init.datasets[0]!;
    return {
      session: this.id,
      params: this.params,
      samplesPerEpoch: this.plan.samplesPerEpoch,
      samplesTotal: this.plan.remaining(this.params.cursor, this.params.epochs),
      sources: this.sourceInfo(),
      tokenizer: { name: first.tokenizer.name, hash: first.tokenizer.hash, vocabSize: first.tokenizer.vocabSize },
      heartbeatMs: this.init.options.heartbeatMs,
      idleTimeoutMs: this.init.options.idleTimeoutMs,
    };
  }

  /** Binds the session to a transport and starts streaming. */
  attach(link: SessionLink, nonce: number): void {
    this.link = link;
    this.nonce = nonce;
    this.state = 'open';
    this.lastHeard = Date.now();
    this.sendControl({ t: CONTROL.ACCEPT, nonce, ...this.acceptFields() });
    this.fill();
    this.pump();
  }

  /** Sends the ACCEPT again (a repeated SUBSCRIBE whose answer was lost). */
  repeatAccept(): void {
    if (this.nonce !== undefined) this.sendControl({ t: CONTROL.ACCEPT, nonce: this.nonce, ...this.acceptFields() });
  }

  /** Anything arrived from the client. */
  touch(): void {
    this.lastHeard = Date.now();
  }

  sendControl(message: ControlMessage): void {
    if (this.link === undefined) return;
    const frame = encodeControlFrame(message);
    this.link.send(frame, 'control');
    this.init.metrics.sent(this.link.transport, 'control', frame.length);
    this.lastSent = Date.now();
  }

  // ---- client messages -------------------------------------------------------------------------

  onCredit(ack: number, window: number): void {
    this.touch();
    if (ack < this.ack) {
      this.counters.staleCredits++;
      this.init.metrics.drop('NDP_ERR_STALE_CREDIT');
      return;
    }
    this.ack = Math.min(ack, this.sentSeq);
    this.window = Math.min(window, this.init.options.maxWindow);
    this.rtx?.release(this.ack);
    while (this.spansHead < this.spans.length && this.spans[this.spansHead]!.lastSeq < this.ack) this.spansHead++;
    if (this.spansHead > 1024) {
      this.spans = this.spans.slice(this.spansHead);
      this.spansHead = 0;
    }
    if (this.state === 'ended' && this.ack >= this.nextSeq) {
      this.close('complete');
      return;
    }
    this.pump();
  }

  onNack(ranges: ReadonlyArray<readonly [number, number]>): void {
    this.touch();
    const gone: Record<'evicted' | 'routed' | 'lossy', Array<[number, number]>> = { evicted: [], routed: [], lossy: [] };
    const add = (reason: 'evicted' | 'routed' | 'lossy', seq: number): void => {
      const list = gone[reason];
      const last = list[list.length - 1];
      if (last !== undefined && last[1] === seq - 1) last[1] = seq;
      else list.push([seq, seq]);
    };
    // One NACK may name at most a window of seqs: a tiny datagram cannot ask for unbounded work.
    let budget = this.init.options.maxWindow;
    for (const range of ranges.slice(0, 256)) {
      const lo = Math.max(range[0], this.ack);
      const hi = Math.min(range[1], this.sentSeq - 1);
      for (let seq = lo; seq <= hi && budget > 0; seq++, budget--) {
        if (this.rtx === undefined) {
          add('lossy', seq);
          continue;
        }
        const held = this.rtx.lookup(seq);
        if (held === ROUTED) add('routed', seq);
        else if (held === 'evicted') add('evicted', seq);
        else if (held !== undefined && !this.rtxQueued.has(seq)) {
          this.rtxQueue.push(seq);
          this.rtxQueued.add(seq);
        }
      }
    }
    for (const reason of ['evicted', 'routed', 'lossy'] as const) this.sendGone(reason, gone[reason]);
    this.pump();
  }

  private sendGone(reason: 'evicted' | 'routed' | 'lossy', ranges: Array<[number, number]>): void {
    if (ranges.length === 0) return;
    let seqs = 0;
    for (const [a, b] of ranges) seqs += b - a + 1;
    if (reason === 'evicted') this.counters.goneEvicted += seqs;
    else if (reason === 'routed') this.counters.goneRouted += seqs;
    else this.counters.goneLossy += seqs;
    this.init.metrics.gone.inc({ reason }, seqs);
    for (let i = 0; i < ranges.length; i += 256) this.sendControl({ t: CONTROL.GONE, session: this.id, ranges: ranges.slice(i, i + 256), reason });
  }

  onStats(counters: Record<string, number>): void {
    this.touch();
    if (typeof counters === 'object' && counters !== null) this.clientStats = counters;
  }

  /** The client said BYE: forget the session, send nothing more. */
  onBye(): void {
    this.close('client', undefined, false);
  }

  // ---- producing frames ------------------------------------------------------------------------

  /** Starts reads of upcoming samples up to the read-ahead. */
  private fill(): void {
    while (this.samplesAhead < this.init.options.readAhead && this.readyBytes < this.init.options.readAheadBytes && this.upcoming !== undefined && this.state !== 'closed') {
      const planned = this.upcoming;
      this.advanceUpcoming();
      const read: PendingRead = { planned };
      this.reads.push(read);
      this.samplesAhead++;
      this.init.datasets[planned.source]!.readBody(planned.sample).then(
        (body) => {
          read.body = body;
          this.onRead();
        },
        (err: unknown) => {
          read.error = err instanceof Error ? err : new Error(String(err));
          this.onRead();
        },
      );
    }
  }

  private onRead(): void {
    if (this.state === 'closed') return;
    let produced = false;
    while (this.reads.length > 0 && (this.reads[0]!.body !== undefined || this.reads[0]!.error !== undefined)) {
      const read = this.reads.shift()!;
      if (read.error !== undefined) {
        this.close('error', 'NDP_ERR_READ_FAILED');
        return;
      }
      this.produce(read.planned, read.body!);
      produced = true;
    }
    if (produced) this.pump();
  }

  private produce(planned: PlannedSample, body: Uint8Array): void {
    const dataset = this.init.datasets[planned.source]!;
    const firstSeq = this.nextSeq;
    const segmented = segmentSample(
      { body, src: dataset.src, dst: this.params.dst, session: this.id, seq: firstSeq, epoch: planned.epoch, position: planned.position, sample: planned.sample, source: planned.source },
      { datagram: this.params.datagram },
    );
    const count = segmented.frames.length;
    const lastSeq = firstSeq + count - 1;
    this.nextSeq = segmented.nextSeq;
    const decision = this.init.router.route(dataset.src, this.params.dst, TYP.SEGMENT, count);
    for (const name of decision.counted) this.init.metrics.routeMatches.inc({ rule: name }, count);
    const rewrite = decision.src !== dataset.src || decision.dst !== this.params.dst;
    const spanInfo = { source: planned.source, firstSeq, lastSeq };
    for (let i = 0; i < count; i++) {
      let frame: Uint8Array | null = segmented.frames[i]!;
      if (!decision.deliver) frame = null;
      else if (rewrite) frame = rewriteCodes(frame, decision.src, decision.dst);
      if (frame !== null && decision.capture) {
        this.init.metrics.route('capture');
        this.init.captureSink?.(frame);
      }
      const size = segmented.frames[i]!.length;
      this.readyBytes += size;
      this.ready.push(i === count - 1 ? { seq: firstSeq + i, size, frame, sample: spanInfo } : { seq: firstSeq + i, size, frame });
    }
    this.spans.push({ firstSeq, lastSeq, epoch: planned.epoch, position: planned.position });
  }

  // ---- sending ---------------------------------------------------------------------------------

  /** Sends as much as credit, rate and the transport allow; re-arms itself when one of them blocks. */
  pump(): void {
    if (this.pumping || this.link === undefined) return;
    this.pumping = true;
    try {
      this.pumpLoop(this.link);
    } finally {
      this.pumping = false;
    }
    if (this.samplesAhead < this.init.options.readAhead && this.readyBytes < this.init.options.readAheadBytes && this.state === 'open') this.fill();
  }

  private pumpLoop(link: SessionLink): void {
    while (this.state === 'open' || this.state === 'ended') {
      if (!link.writable) {
        if (!this.waitingWritable) {
          this.waitingWritable = true;
          link.whenWritable(() => {
            this.waitingWritable = false;
            this.pump();
          });
        }
        return;
      }
      if (this.rateTimer !== undefined) return;
      let retransmit: Uint8Array | undefined;
      while (this.rtxQueue.length > 0 && retransmit === undefined) {
        const held = this.rtx!.lookup(this.rtxQueue[0]!);
        if (held instanceof Uint8Array) retransmit = held;
        else this.rtxQueued.delete(this.rtxQueue.shift()!);
      }
      let item: ReadyFrame | undefined;
      if (retransmit === undefined) {
        item = this.ready[this.readyHead];
        if (item === undefined) {
          if (this.state === 'open' && this.upcoming === undefined && this.reads.length === 0) this.sendEnd();
          return;
        }
        if (item.seq >= this.ack + this.window) {
          if (!this.stalled) {
            this.stalled = true;
            this.counters.creditStalls++;
            this.init.metrics.creditStalls.inc();
          }
          return;
        }
      }
      const size = retransmit?.length ?? item?.frame?.length ?? 0;
      if (size > 0) {
        const now = performance.now();
        const wait = Math.max(this.bucket.delay(now), this.init.totalBucket.delay(now));
        if (wait > 0) {
          this.rateTimer = setTimeout(() => {
            this.rateTimer = undefined;
            this.pump();
          }, Math.max(1, Math.ceil(wait)));
          return;
        }
        this.bucket.take(size, now);
        this.init.totalBucket.take(size, now);
      }
      if (retransmit !== undefined) {
        const seq = this.rtxQueue.shift()!;
        this.rtxQueued.delete(seq);
        const frame = withRetransmitFlag(retransmit);
        link.send(frame, 'retransmit');
        this.counters.retransmittedFrames++;
        this.counters.retransmittedBytes += frame.length;
        this.init.metrics.retransmits.inc();
        this.init.metrics.sent(link.transport, 'retransmit', frame.length);
        this.lastSent = Date.now();
        continue;
      }
      this.firstTransmission(link, item!);
    }
  }

  private firstTransmission(link: SessionLink, item: ReadyFrame): void {
    this.readyHead++;
    if (this.readyHead > 4096) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
    this.stalled = false;
    this.sentSeq = item.seq + 1;
    this.readyBytes -= item.size;
    if (item.frame === null) {
      this.rtx?.hold(item.seq, ROUTED);
      this.counters.routedDrop++;
      this.init.metrics.route('drop');
      if (item.sample !== undefined) this.sendGone('routed', [[item.sample.firstSeq, item.sample.lastSeq]]);
    } else {
      this.rtx?.hold(item.seq, item.frame);
      this.init.metrics.route('deliver');
      const out = this.injector.apply(item.seq, item.frame);
      if (out !== undefined) {
        if (out !== item.frame) this.init.metrics.injected.inc({ kind: 'corrupt' });
        link.send(out, 'data');
        this.counters.frames++;
        this.counters.bytes += out.length;
        this.init.metrics.sent(link.transport, 'data', out.length);
        this.lastSent = Date.now();
      } else {
        this.init.metrics.injected.inc({ kind: 'drop' });
      }
    }
    if (item.sample !== undefined) {
      this.samplesAhead--;
      this.counters.samples++;
      this.perSource[item.sample.source]! += 1;
    }
  }

  private endMessage(): ControlMessage {
    return {
      t: CONTROL.END,
      session: this.id,
      nextSeq: this.nextSeq,
      cursor: { epoch: this.params.epochs, position: 0 },
      counters: {
        frames: this.counters.frames,
        retransmitted: this.counters.retransmittedFrames,
        injectedDrop: this.injector.dropped,
        injectedCorrupt: this.injector.corrupted,
        routedDrop: this.counters.routedDrop,
        gone: this.counters.goneEvicted + this.counters.goneRouted + this.counters.goneLossy,
      },
    };
  }

  private sendEnd(): void {
    this.state = 'ended';
    this.endedAt = Date.now();
    this.sendControl(this.endMessage());
    if (this.ack >= this.nextSeq) this.close('complete');
  }

  // ---- liveness and the end --------------------------------------------------------------------

  private tick(): void {
    const now = Date.now();
    if (this.state === 'pending') {
      if (now - this.createdAt > this.init.options.ticketTtlMs) this.close('expired', undefined, false);
      return;
    }
    if (this.state === 'closed') return;
    if (now - this.lastHeard > this.init.options.idleTimeoutMs) {
      this.close('idle', 'NDP_ERR_IDLE_TIMEOUT');
      return;
    }
    if (this.state === 'ended' && now - this.endedAt >= this.init.options.heartbeatMs) {
      this.endedAt = now;
      this.sendControl(this.endMessage());
    } else if (now - this.lastSent >= this.init.options.heartbeatMs) {
      this.sendControl({ t: CONTROL.HEARTBEAT, session: this.id, time: now % 2 ** 32 });
    }
  }

  /** The resume point: the first sample not entirely acknowledged (NDP.md §7.7). */
  cursor(): Cursor {
    for (let i = this.spansHead; i < this.spans.length; i++) {
      const span = this.spans[i]!;
      if (span.lastSeq >= this.ack) return { epoch: span.epoch, position: span.position };
    }
    const next = this.reads[0]?.planned ?? this.upcoming;
    if (next !== undefined) return { epoch: next.epoch, position: next.position };
    return { epoch: this.params.epochs, position: 0 };
  }

  /**
   * Ends the session: BYE with the cursor (unless the client ended it), the transport released,
   * the manager told. `reason` is a BYE reason of NDP.md §7.9.
   */
  close(reason: string, code?: NdpErrorCode, sendBye = true): void {
    if (this.state === 'closed') return;
    const wasAttached = this.link !== undefined;
    if (sendBye && wasAttached) {
      const bye: ControlMessage = code === undefined ? { t: CONTROL.BYE, session: this.id, reason, cursor: this.cursor() } : { t: CONTROL.BYE, session: this.id, reason, code, cursor: this.cursor() };
      this.sendControl(bye);
      // A lost datagram must not leave a trainer waiting for its idle timeout at shutdown.
      if (this.link!.transport === 'udp' && reason === 'shutdown') {
        const frame = encodeControlFrame(bye);
        const link = this.link!;
        setTimeout(() => link.send(frame, 'control'), 20).unref();
        setTimeout(() => link.send(frame, 'control'), 40).unref();
      }
    }
    this.state = 'closed';
    clearInterval(this.tickTimer);
    clearTimeout(this.rateTimer);
    this.rateTimer = undefined;
    this.link?.close(CLOSE_CODES[reason] ?? 4500, code ?? '');
    this.init.onClosed(this);
  }

  /** Counters and state for `GET /v1/sessions/:id` (NDP.md §7.10). */
  info(): Record<string, unknown> {
    const M = this.plan.samplesPerEpoch;
    const total = this.counters.samples;
    return {
      session: this.id,
      state: this.state,
      transport: this.link?.transport ?? null,
      peer: this.link?.peer ?? null,
      params: this.params,
      samplesPerEpoch: M,
      cursor: this.cursor(),
      ack: this.ack,
      nextSeq: this.sentSeq,
      window: this.window,
      sent: { frames: this.counters.frames, bytes: this.counters.bytes, samples: total },
      retransmitted: { frames: this.counters.retransmittedFrames, bytes: this.counters.retransmittedBytes },
      injected: { drop: this.injector.dropped, corrupt: this.injector.corrupted },
      routedDrop: this.counters.routedDrop,
      gone: { evicted: this.counters.goneEvicted, routed: this.counters.goneRouted, lossy: this.counters.goneLossy },
      creditStalls: this.counters.creditStalls,
      staleCredits: this.counters.staleCredits,
      buffered: { retransmit: this.rtx?.bytes ?? 0, transport: this.link?.buffered ?? 0 },
      perSource: this.init.datasets.map((d, j) => ({ dataset: d.name, samples: this.perSource[j]!, share: total === 0 ? 0 : this.perSource[j]! / total, planned: M === 0 ? 0 : this.plan.quotas[j]! / M })),
      clientStats: this.clientStats,
    };
  }
}

/** A copy of `frame` with the RETRANSMIT flag set and its CRC-16 recomputed (NDP.md §7.6). */
export function withRetransmitFlag(frame: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(frame);
  copy[FRAME_HEADER_BYTES + 1]! |= SEGMENT_FLAG.RETRANSMIT;
  writeCrc(copy);
  return copy;
}

/** A copy of `frame` with new SRC and DST bytes (routing rules) and its CRC-16 recomputed. */
export function rewriteCodes(frame: Uint8Array, src: number, dst: number): Uint8Array {
  const copy = Uint8Array.from(frame);
  copy[1] = src;
  copy[2] = dst;
  writeCrc(copy);
  return copy;
}

function writeCrc(frame: Uint8Array): void {
  const at = frame.length - FRAME_CRC_BYTES;
  const crc = crc16(frame, undefined, 0, at);
  frame[at] = crc >> 8;
  frame[at + 1] = crc & 0xff;
}
