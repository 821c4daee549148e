/**
 * One session on one transport, receiver side (NDP.md §6.1, §7, and §7.15 "Receiver"): opens it
 * (UDP: HELLO → COOKIE → SUBSCRIBE; WebSocket: SUBSCRIBE), then turns frames into samples delivered
 * strictly in stream order, with every frame and every sample accounted for:
 *
 * frame → CRC-16 check (`crc`) → CONTROL or DST dispatch (`unrouted`) → transport header
 * (`malformed`, `foreign`, `out_of_window`) → CRC-Drop augmentation (`augment`) → seq tracking
 * (`duplicate`, `late`; gaps NACKed in `repair`, given up in `lossy`) → reassembler
 * (src/protocol/reassembler.ts) → sample body → in-order delivery by stream ordinal.
 *
 * A sample is resolved in order: delivered when complete, dropped once every seq it could occupy is
 * received or given up (`ack` passed it) without it completing, the reason taken from what happened
 * to its missing fragments (`crc`, `augment`, `gone`, `lost`) or from the reassembler (`timeout`,
 * `body_crc`, …). The session ends `complete` when END's `nextSeq` is acked and every sample of
 * `samplesTotal` is resolved, or otherwise (BYE, close, silence) for the client to resume.
 */
import type { Sample } from '../src/dataset/sample.js';
import { decodeControl, encodeControlFrame, type ControlMessage, type Cursor, type ResolvedSessionParams, type SessionParams, type SourceInfo } from '../src/protocol/control.js';
import { NdpError } from '../src/protocol/errors.js';
import { decodeFrame, readFrameAt, type DecodedFrame } from '../src/protocol/frame.js';
import { Reassembler, sampleKey, type DroppedSample } from '../src/protocol/reassembler.js';
import { CONTROL, DST, SEGMENT_FLAG, SRC, TYP } from '../src/protocol/registry.js';
import { decodeSampleBody } from '../src/protocol/sample-body.js';
import { readTransportHeader, type TransportHeader } from '../src/protocol/transport-header.js';
import type { Accounting, SampleDropReason } from './accounting.js';
import { CrcDrop } from './crc-drop.js';
import { DstDispatch } from './dst-dispatch.js';
import { LoopClock } from './loop-clock.js';
import { SeqTracker } from './seq-tracker.js';
import type { Transport } from './transport.js';

/** What ACCEPT (or the POST /v1/sessions reply) says about the session (NDP.md §6.1). */
export interface AcceptInfo {
  readonly session: number;
  readonly params: ResolvedSessionParams;
  readonly samplesPerEpoch: number;
  readonly samplesTotal: number;
  readonly sources: readonly SourceInfo[];
  readonly tokenizer?: { readonly name: string; readonly hash: string; readonly vocabSize: number };
  readonly heartbeatMs: number;
  readonly idleTimeoutMs: number;
}

/** A sample as the session delivers it: in stream order, with where it stands in the stream. */
export interface DeliveredSample {
  readonly sample: Sample;
  readonly epoch: number;
  readonly position: number;
  /** Index into ACCEPT's `sources`. */
  readonly source: number;
  readonly dataset: string;
  /** Frame SRC code as received. */
  readonly src: number;
}

/** What the session hands upwards, in stream order. */
export interface SessionSink {
  deliver(sample: DeliveredSample): void;
  dropped(epoch: number, position: number, reason: SampleDropReason | string): void;
  /** True while the consumer is behind: the session stops granting credit. */
  backpressured(): boolean;
}

/** How the session is asked for: in-band parameters, or an HTTP-opened session's ticket. */
export type SubscribeRequest = { readonly params: SessionParams } | { readonly session: number; readonly ticket: string };

export interface SessionOptions {
  readonly token?: string;
  /** CRC-Drop augmentation rate (0 ≤ rate < 1). Defaults to 0. */
  readonly crcDropRate?: number;
  /** CRC-Drop seed. Defaults to 0. */
  readonly crcDropSeed?: number;
  /** Handshake retries: first wait ms (doubles up to 2,000), and tries. Defaults to 250 ms, 8 tries (NDP.md §7.3). */
  readonly handshakeRetryMs?: number;
  readonly handshakeTries?: number;
  /** Timer tick for NACKs, credit and liveness, ms. Defaults to 10. */
  readonly tickMs?: number;
  /**
   * A gap is NACKed when noticed at least this long ago, ms. Defaults to 0 (next tick). This and the
   * NACK waits below run on a clock that stops while the event loop is blocked (loop-clock.ts).
   */
  readonly nackDelayMs?: number;
  /**
   * A NACKed seq is NACKed again once its retransmission could have arrived: after the measured
   * NACK → retransmission round trip (RFC 6298 timeout, doubled per repeat), never sooner than this, ms.
   * Defaults to 50.
   */
  readonly nackIntervalMs?: number;
  /** The most a NACKed seq waits before it is NACKed again, and the wait before a round trip was measured, ms. Defaults to 1,000 (or nackIntervalMs when larger). */
  readonly nackMaxIntervalMs?: number;
  /** Lossy sessions: a gap not filled within this long (event-loop stalls not counted) is given up (`lost`), even without GONE, ms. Defaults to 500. */
  readonly lossyGapTimeoutMs?: number;
  /** Nothing from the server for this long ends the session `silent` (the client resumes), ms. Defaults to max(3 × heartbeatMs, 3,000). */
  readonly deadAfterMs?: number;
  /** A data seq this far beyond the granted credit limit is dropped `out_of_window`. Defaults to 1,024. */
  readonly windowSlack?: number;
  /** Reassembler limits (src/protocol/reassembler.ts defaults). */
  readonly reassembly?: ConstructorParameters<typeof Reassembler>[0];
  /** Extra DST handlers; a frame for a DST without one is counted `unrouted` and dropped. */
  readonly handlers?: ReadonlyMap<number, (frame: DecodedFrame) => void>;
}

export type SessionEnd =
  | { readonly status: 'complete' }
  | { readonly status: 'bye'; readonly reason: string; readonly code?: string; readonly cursor?: Cursor }
  | { readonly status: 'closed'; readonly error?: Error }
  | { readonly status: 'silent' }
  | { readonly status: 'error'; readonly error: Error };

interface Known {
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly epoch: number;
  readonly position: number;
  sample?: DeliveredSample;
  dropReason?: string;
}

const HELLO_MIN_BYTES = 256;
/** Bytes held between ACCEPT and the session taking over (one macrotask); past it, counted `foreign`. */
const EARLY_LIMIT_BYTES = 16 * 1024 * 1024;
const MAX_NACK_RANGES = 256;
/** Sample-level names for the reassembler's drop reasons. */
const REASSEMBLY_REASON: Record<string, SampleDropReason> = {
  evicted_count: 'overflow',
  evicted_memory: 'overflow',
  bad_segment: 'rejected',
  fragment_mismatch: 'rejected',
  sample_too_large: 'rejected',
  body_crc: 'body_crc',
  timeout: 'timeout',
};

let nonceCounter = Math.floor(Math.random() * 0x7fff_ffff);

export class Session {
  readonly accept: AcceptInfo;
  /** END's counters from the server (what it sent, retransmitted, injected), once END arrived. */
  endCounters: Record<string, number> | undefined;
  readonly ended: Promise<SessionEnd>;
  readonly tracker: SeqTracker;
  /** The tracker's time: wall time less event-loop stalls (loop-clock.ts). */
  private readonly loopClock: LoopClock;
  readonly reassembler: Reassembler;
  readonly dispatch = new DstDispatch();
  private readonly crcDrop: CrcDrop;
  private readonly known = new Map<number, Known>();
  /** Hints for attribution: seqs whose frame failed its CRC or was augment-dropped. */
  private readonly hints = new Map<number, 'crc' | 'augment' | 'unrouted'>();
  private nextOrdinal = 0;
  private lastResolvedSeq = -1;
  /** Tracker counts already added to the accounting (which spans sessions). */
  private countedMissing = 0;
  private countedRepaired = 0;
  private resolveEnded!: (end: SessionEnd) => void;
  private isEnded = false;
  private timer: NodeJS.Timeout | undefined;
  private lastHeard = performance.now();
  private lastSent = 0;
  private framesSinceCredit = 0;
  private creditLimit: number;
  private readonly tickMs: number;
  private readonly deadAfterMs: number;

  private constructor(
    readonly transport: Transport,
    accept: AcceptInfo,
    private readonly accounting: Accounting,
    private readonly sink: SessionSink,
    private readonly options: SessionOptions,
    checked: { readonly tracker: SeqTracker; readonly crcDrop: CrcDrop },
  ) {
    this.accept = accept;
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
    this.tracker = checked.tracker;
    this.crcDrop = checked.crcDrop;
    this.reassembler = new Reassembler({ ...options.reassembly, onDrop: (d) => this.onReassemblyDrop(d) });
    this.creditLimit = accept.params.window;
    this.tickMs = options.tickMs ?? 10;
    this.loopClock = new LoopClock(2 * this.tickMs);
    this.deadAfterMs = options.deadAfterMs ?? Math.max(3 * accept.heartbeatMs, 3000);
    for (const [dst, handler] of options.handlers ?? []) this.dispatch.on(dst, handler);
    this.dispatch.on(accept.params.dst, (frame) => this.onDataFrame(frame));
  }

  /**
   * Opens a session on `transport`: the handshake of NDP.md §7.3 (UDP) or §7.4 (WebSocket), with
   * retries. Resolves once ACCEPT arrived and frames flow into `sink`; rejects with NDP_ERR_REFUSED
   * (REJECT, with the server's code in the message), NDP_ERR_UNREACHABLE (no answer after every
   * retry, or the transport died); throws RangeError, before sending anything, on a bad
   * crcDropRate / nackIntervalMs / nackMaxIntervalMs.
   */
  static async open(transport: Transport, request: SubscribeRequest, accounting: Accounting, sink: SessionSink, options: SessionOptions = {}): Promise<Session> {
    // Built before the handshake so that a bad option (RangeError) leaves no session open on the server.
    const checked = {
      tracker: new SeqTracker({ minMs: options.nackIntervalMs, maxMs: options.nackMaxIntervalMs }),
      crcDrop: new CrcDrop({ rate: options.crcDropRate ?? 0, seed: options.crcDropSeed ?? 0 }),
    };
    const handshake = new Handshake(transport, accounting, options);
    try {
      const accept = await handshake.run(request);
      const session = new Session(transport, accept, accounting, sink, options, checked);
      handshake.handOver((bytes) => session.onMessage(bytes));
      session.start();
      return session;
    } finally {
      handshake.dispose();
    }
  }

  /** Stream ordinal of a sample of this session (0 = its start cursor). */
  ordinalOf(epoch: number, position: number): number {
    const start = this.accept.params.cursor;
    return (epoch - start.epoch) * this.accept.samplesPerEpoch + position - start.position;
  }

  /** Sends credit now (the consumer caught up). */
  grantCredit(): void {
    this.sendCredit(performance.now());
  }

  /** Ends the session from this side: BYE, then close. */
  async close(reason = 'done'): Promise<void> {
    if (!this.isEnded) {
      this.send({ t: CONTROL.BYE, session: this.accept.session, reason } as ControlMessage);
      this.finish({ status: 'bye', reason: `client: ${reason}` });
    }
    await this.transport.close();
  }

  private start(): void {
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref?.();
    void this.transport.closed.then((error) => this.finish({ status: 'closed', ...(error !== undefined ? { error } : {}) }));
    this.sendCredit(performance.now());
  }

  private finish(end: SessionEnd): void {
    if (this.isEnded) return;
    this.isEnded = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.accounting.samplesPending = 0;
    this.resolveEnded(end);
  }

  private send(message: ControlMessage): void {
    this.lastSent = performance.now();
    this.transport.send(encodeControlFrame(message, SRC.TRAINER));
  }

  private sendCredit(now: number): void {
    if (this.isEnded) return;
    if (this.sink.backpressured()) {
      // No new credit while the consumer is behind; a HEARTBEAT keeps the session alive.
      if (now - this.lastSent >= this.accept.heartbeatMs / 2) this.send({ t: CONTROL.HEARTBEAT, session: this.accept.session, time: Date.now() >>> 0 } as ControlMessage);
      return;
    }
    this.framesSinceCredit = 0;
    this.creditLimit = this.tracker.ack + this.accept.params.window;
    this.send({ t: CONTROL.CREDIT, session: this.accept.session, ack: this.tracker.ack, window: this.accept.params.window });
  }

  private tick(): void {
    const now = performance.now();
    if (now - this.lastHeard > this.deadAfterMs) {
      this.finish({ status: 'silent' });
      return;
    }
    this.reassembler.expire();
    const lossy = this.accept.params.loss === 'lossy';
    const loopNow = this.loopClock.read(now);
    if (lossy && this.tracker.giveUpOlderThan(loopNow - (this.options.lossyGapTimeoutMs ?? 500), 'lost') > 0) this.sendCredit(now);
    const ranges = this.tracker.nackRanges(loopNow, this.options.nackDelayMs ?? 0, MAX_NACK_RANGES);
    if (ranges.length > 0) {
      for (const [a, b] of ranges) this.accounting.framesNacked += b - a + 1;
      this.send({ t: CONTROL.NACK, session: this.accept.session, ranges });
    }
    if (now - this.lastSent >= Math.min(this.accept.heartbeatMs, 250)) this.sendCredit(now);
    this.drain();
  }

  /** One datagram / WebSocket message. */
  onMessage(bytes: Uint8Array): void {
    this.lastHeard = performance.now();
    this.accounting.bytesReceived += bytes.length;
    if (this.transport.kind === 'udp') {
      let frame: DecodedFrame;
      try {
        frame = decodeFrame(bytes);
      } catch {
        this.accounting.framesReceived++;
        this.accounting.dropFrame('malformed');
        return;
      }
      this.onFrame(frame);
    } else {
      for (const { frame } of framesOf(bytes, this.accounting)) this.onFrame(frame);
    }
    this.drain();
  }

  private onFrame(frame: DecodedFrame): void {
    this.accounting.framesReceived++;
    if (!frame.crcOk) {
      // The header is untrusted, but its seq is a good guess for attributing the sample drop.
      if (frame.typ === TYP.SEGMENT && frame.payload.length >= 12) {
        const seq = new DataView(frame.payload.buffer, frame.payload.byteOffset + 8, 4).getUint32(0);
        if (seq >= this.tracker.ack && seq < this.creditLimit) this.hints.set(seq, 'crc');
      }
      this.accounting.dropFrame('crc');
      return;
    }
    if (frame.typ === TYP.CONTROL && frame.dst === DST.CONTROL) {
      this.onControlFrame(frame);
      return;
    }
    if (frame.dst !== this.accept.params.dst && frame.typ === TYP.SEGMENT) this.markRoutedAway(frame);
    if (!this.dispatch.dispatch(frame)) this.accounting.dropFrame('unrouted');
    else if (frame.dst !== this.accept.params.dst) this.accounting.framesUsed++;
  }

  /**
   * A SEGMENT of this session that a routing rule sent to another DST (NDP.md §7.11) still holds a
   * seq of the stream: it arrived, so it is not NACKed (a retransmission would carry the same DST
   * again); its sample cannot complete here and is dropped `unrouted`.
   */
  private markRoutedAway(frame: DecodedFrame): void {
    let header: TransportHeader;
    try {
      header = readTransportHeader(frame.payload).header;
    } catch {
      return;
    }
    if (header.session !== this.accept.session || header.seq >= this.creditLimit + (this.options.windowSlack ?? 1024)) return;
    if (this.tracker.mark(header.seq, this.loopClock.read()) === 'new') this.hints.set(header.seq, 'unrouted');
  }

  private onControlFrame(frame: DecodedFrame): void {
    let message: ControlMessage;
    try {
      message = decodeControl(frame.payload);
    } catch {
      this.accounting.dropFrame('malformed');
      return;
    }
    const m = message as ControlMessage & { session?: number };
    if (m.t !== CONTROL.REJECT && m.t !== CONTROL.ACCEPT && m.t !== CONTROL.COOKIE && m.session !== this.accept.session) {
      this.accounting.dropFrame('foreign');
      return;
    }
    this.accounting.framesControl++;
    const now = performance.now();
    if (message.t === CONTROL.END) {
      const end = message as { nextSeq: number; counters?: Record<string, number> };
      if (end.nextSeq > this.creditLimit + (this.options.windowSlack ?? 1024)) return;
      this.tracker.end(end.nextSeq, this.loopClock.read(now));
      if (end.counters !== undefined) this.endCounters = end.counters;
      this.sendCredit(now);
    } else if (message.t === CONTROL.GONE) {
      const gone = message as { ranges?: Array<[number, number]>; reason?: string };
      let n = 0;
      for (const [first, last] of gone.ranges ?? []) n += this.tracker.giveUp(first, last, gone.reason === 'lossy' ? 'lost' : 'gone');
      if (n > 0) this.sendCredit(now);
    } else if (message.t === CONTROL.BYE) {
      const bye = message as { reason: string; code?: string; cursor?: Cursor };
      // BYE complete follows our final CREDIT; drain() has finished the session by then.
      if (bye.reason === 'complete' && this.tracker.complete) return;
      this.finish({ status: 'bye', reason: bye.reason, ...(bye.code !== undefined ? { code: bye.code } : {}), ...(bye.cursor !== undefined ? { cursor: bye.cursor } : {}) });
    }
    // HEARTBEAT, STATS, a repeated ACCEPT: liveness only.
  }

  private onDataFrame(frame: DecodedFrame): void {
    if (frame.typ !== TYP.SEGMENT) {
      this.accounting.dropFrame('unrouted');
      return;
    }
    let parsed: { header: TransportHeader; fragment: Uint8Array };
    try {
      parsed = readTransportHeader(frame.payload);
    } catch {
      this.accounting.dropFrame('malformed');
      return;
    }
    const { header, fragment } = parsed;
    if (header.session !== this.accept.session) {
      this.accounting.dropFrame('foreign');
      return;
    }
    if (header.seq >= this.creditLimit + (this.options.windowSlack ?? 1024)) {
      this.accounting.dropFrame('out_of_window');
      return;
    }
    const ordinal = this.ordinalOf(header.epoch, header.position);
    if (ordinal < 0 || ordinal >= this.accept.samplesTotal || header.fragIndex > header.seq) {
      this.accounting.dropFrame('malformed');
      return;
    }
    if (this.crcDrop.drop()) {
      this.hints.set(header.seq, 'augment');
      this.accounting.dropFrame('augment');
      return;
    }
    const mark = this.tracker.mark(header.seq, this.loopClock.read(), (header.flags & SEGMENT_FLAG.RETRANSMIT) !== 0);
    if (mark !== 'new') {
      this.accounting.dropFrame(mark);
      return;
    }
    if (ordinal >= this.nextOrdinal && !this.known.has(ordinal)) {
      const firstSeq = header.seq - header.fragIndex;
      this.known.set(ordinal, { firstSeq, lastSeq: firstSeq + header.fragCount - 1, epoch: header.epoch, position: header.position });
      this.accounting.samplesPending++;
    }
    const result = this.reassembler.accept(header, fragment);
    switch (result.status) {
      case 'complete':
        this.accounting.framesUsed++;
        this.onBody(ordinal, result.header, result.body, frame.src);
        break;
      case 'pending':
        this.accounting.framesUsed++;
        break;
      case 'duplicate':
        this.accounting.dropFrame('duplicate');
        break;
      case 'late':
        this.accounting.dropFrame('late');
        break;
      case 'dropped':
        if (result.reason === 'body_crc') this.accounting.framesUsed++;
        else this.accounting.dropFrame('rejected');
        break;
    }
    if (++this.framesSinceCredit >= this.accept.params.window / 4) this.sendCredit(performance.now());
  }

  private onBody(ordinal: number, header: TransportHeader, body: Uint8Array, src: number): void {
    const entry = this.known.get(ordinal);
    if (entry === undefined) return;
    try {
      const { tokens, lossMask } = decodeSampleBody(body);
      const source = this.accept.sources[header.source];
      entry.sample = {
        sample: { index: header.sample, src, tokens, lossMask },
        epoch: header.epoch,
        position: header.position,
        source: header.source,
        dataset: source?.dataset ?? '',
        src,
      };
    } catch {
      // NDP_ERR_BAD_BODY / NDP_ERR_UNSUPPORTED_VERSION: the CRC-32 matched, so the sender built it wrong.
      entry.dropReason = 'bad_body';
    }
  }

  private onReassemblyDrop(dropped: DroppedSample): void {
    if (dropped.header === undefined) return;
    const entry = this.known.get(this.ordinalOf(dropped.header.epoch, dropped.header.position));
    if (entry !== undefined && entry.sample === undefined && entry.dropReason === undefined) entry.dropReason = REASSEMBLY_REASON[dropped.reason] ?? dropped.reason;
  }

  /** Resolves samples in stream order as far as possible. */
  private drain(): void {
    this.accounting.framesMissing += this.tracker.missing - this.countedMissing;
    this.accounting.framesRepaired += this.tracker.repaired - this.countedRepaired;
    this.countedMissing = this.tracker.missing;
    this.countedRepaired = this.tracker.repaired;
    if (this.isEnded) return;
    const total = this.accept.samplesTotal;
    const ack = this.tracker.ack;
    while (this.nextOrdinal < total) {
      const entry = this.known.get(this.nextOrdinal);
      if (entry !== undefined) {
        if (entry.sample !== undefined) {
          this.resolve(entry);
          this.sink.deliver(entry.sample);
          continue;
        }
        if (entry.dropReason === undefined && ack > entry.lastSeq) {
          entry.dropReason = this.attribute(entry.firstSeq, entry.lastSeq);
          this.reassembler.drop(sampleKey({ session: this.accept.session, epoch: entry.epoch, position: entry.position }), entry.dropReason);
        }
        if (entry.dropReason === undefined) break;
        this.resolve(entry);
        this.dropOrdinal(this.nextOrdinal - 1, entry.dropReason);
        continue;
      }
      // Nothing of this sample arrived: it is lost once ack passed the first seq of a later sample, or the stream's end.
      const later = this.lowestKnownFirstSeq();
      const passed = (later !== undefined && ack >= later) || this.tracker.complete;
      if (!passed) break;
      const reason = this.attribute(this.lastResolvedSeq + 1, later !== undefined ? later - 1 : (this.tracker.endSeq ?? ack) - 1);
      this.nextOrdinal++;
      this.dropOrdinal(this.nextOrdinal - 1, reason);
    }
    if (this.nextOrdinal >= total && this.tracker.complete) {
      this.sendCredit(performance.now());
      this.send({ t: CONTROL.BYE, session: this.accept.session, reason: 'done' } as ControlMessage);
      this.finish({ status: 'complete' });
      void this.transport.close();
    }
  }

  private resolve(entry: Known): void {
    this.known.delete(this.nextOrdinal);
    this.nextOrdinal++;
    this.accounting.samplesPending--;
    this.lastResolvedSeq = entry.lastSeq;
    for (let s = entry.firstSeq; s <= entry.lastSeq; s++) this.hints.delete(s);
    if (this.nextOrdinal % 1024 === 0) this.tracker.prune(entry.firstSeq);
  }

  private dropOrdinal(ordinal: number, reason: string): void {
    const start = this.accept.params.cursor;
    const flat = start.position + ordinal;
    const m = this.accept.samplesPerEpoch;
    this.sink.dropped(start.epoch + Math.floor(flat / m), flat % m, reason);
  }

  private lowestKnownFirstSeq(): number | undefined {
    let lowest: number | undefined;
    for (const entry of this.known.values()) if (lowest === undefined || entry.firstSeq < lowest) lowest = entry.firstSeq;
    return lowest;
  }

  /** Why the seqs `first..last` did not make a sample: a CRC failure, augmentation or routing beats a plain give-up. */
  private attribute(first: number, last: number): SampleDropReason {
    let giveUp: SampleDropReason | undefined;
    for (let s = first; s <= last && s < first + 65536; s++) {
      const hint = this.hints.get(s);
      if (hint !== undefined) return hint;
      giveUp ??= this.tracker.reasonFor(s);
    }
    return giveUp ?? 'lost';
  }
}

/** The opening exchange, with retries; owns the transport's receive handler until ACCEPT. */
class Handshake {
  private waiter: ((message: ControlMessage) => void) | undefined;
  private forward: ((bytes: Uint8Array) => void) | undefined;
  private readonly early: Uint8Array[] = [];
  private earlyBytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly accounting: Accounting,
    private readonly options: SessionOptions,
  ) {
    transport.onMessage((bytes) => this.onMessage(bytes));
  }

  async run(request: SubscribeRequest): Promise<AcceptInfo> {
    const nonce = (nonceCounter = (nonceCounter + 1) >>> 0);
    const subscribe = (cookie?: Uint8Array): ControlMessage =>
      ({
        t: CONTROL.SUBSCRIBE,
        nonce,
        ...(cookie !== undefined ? { cookie } : {}),
        ...(this.options.token !== undefined ? { token: this.options.token } : {}),
        ...('params' in request ? { params: request.params } : { session: request.session, ticket: request.ticket }),
      }) as ControlMessage;
    for (let attempt = 0; attempt < 3; attempt++) {
      let cookie: Uint8Array | undefined;
      if (this.transport.kind === 'udp') {
        const hello = { t: CONTROL.HELLO, version: 1, ...(this.options.token !== undefined ? { token: this.options.token } : {}) };
        // NDP.md §7.3: a HELLO datagram of at least 256 bytes, so the COOKIE fits the 3× budget.
        const bare = encodeControlFrame({ ...hello, pad: new Uint8Array(0) } as unknown as ControlMessage, SRC.TRAINER).length;
        const helloFrame = encodeControlFrame({ ...hello, pad: new Uint8Array(Math.max(0, HELLO_MIN_BYTES - bare + 2)) } as unknown as ControlMessage, SRC.TRAINER);
        const reply = await this.exchange(helloFrame, (m) => m.t === CONTROL.COOKIE || m.t === CONTROL.REJECT);
        if (reply.t === CONTROL.REJECT) throw refused(reply as { code?: string; message?: string });
        cookie = (reply as { cookie: Uint8Array }).cookie;
      }
      const reply = await this.exchange(encodeControlFrame(subscribe(cookie), SRC.TRAINER), (m) => (m.t === CONTROL.ACCEPT || m.t === CONTROL.REJECT) && ((m as { nonce?: number }).nonce === undefined || (m as { nonce?: number }).nonce === nonce));
      if (reply.t === CONTROL.ACCEPT) return reply as unknown as AcceptInfo;
      const reject = reply as { code: string; message: string };
      // An expired or foreign cookie: start again with HELLO (NDP.md §7.3).
      if (reject.code === 'NDP_ERR_BAD_COOKIE' && this.transport.kind === 'udp') continue;
      throw refused(reject);
    }
    throw new NdpError('NDP_ERR_REFUSED', 'the server kept refusing the cookie (NDP_ERR_BAD_COOKIE)');
  }

  /** After ACCEPT: later messages go to the session; any that came in the meantime first. */
  handOver(forward: (bytes: Uint8Array) => void): void {
    const early = this.early.splice(0);
    if (early.length === 0) {
      this.forward = forward;
      return;
    }
    // After the opener has the Session in hand (a macrotask later), in arrival order.
    setImmediate(() => {
      for (const bytes of early.concat(this.early.splice(0))) forward(bytes);
      this.forward = forward;
    });
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.waiter = undefined;
  }

  /** Sends `frame` and waits for a matching reply, resending with backoff (NDP.md §7.3 retries). */
  private async exchange(frame: Uint8Array, match: (m: ControlMessage) => boolean): Promise<ControlMessage> {
    const tries = this.transport.kind === 'udp' ? (this.options.handshakeTries ?? 8) : 1;
    let wait = this.options.handshakeRetryMs ?? 250;
    const overall = this.transport.kind === 'udp' ? Infinity : 10_000;
    return new Promise<ControlMessage>((resolve, reject) => {
      let sent = 0;
      const fail = (error: Error) => {
        this.waiter = undefined;
        if (this.timer !== undefined) clearTimeout(this.timer);
        reject(error);
      };
      void this.transport.closed.then((error) => fail(new NdpError('NDP_ERR_UNREACHABLE', `connection closed during the handshake${error ? `: ${error.message}` : ''}`, error ? { cause: error } : undefined)));
      this.waiter = (m) => {
        if (!match(m)) return;
        this.waiter = undefined;
        if (this.timer !== undefined) clearTimeout(this.timer);
        resolve(m);
      };
      const attempt = () => {
        if (sent >= tries) {
          fail(new NdpError('NDP_ERR_UNREACHABLE', `no answer from the server after ${tries} tries`));
          return;
        }
        sent++;
        this.transport.send(frame);
        // WebSocket: one send (TCP delivers it) and one overall deadline; UDP: resend with backoff.
        this.timer = tries === 1 ? setTimeout(() => fail(new NdpError('NDP_ERR_UNREACHABLE', `no answer from the server within ${overall} ms`)), overall) : setTimeout(attempt, wait);
        wait = Math.min(wait * 2, 2000);
      };
      attempt();
    });
  }

  private keepEarly(bytes: Uint8Array): void {
    if (this.earlyBytes + bytes.length > EARLY_LIMIT_BYTES) {
      this.accounting.framesReceived++;
      this.accounting.dropFrame('foreign');
      return;
    }
    this.earlyBytes += bytes.length;
    this.early.push(bytes);
  }

  private onMessage(bytes: Uint8Array): void {
    if (this.forward !== undefined) {
      this.forward(bytes);
      return;
    }
    if (this.waiter === undefined) {
      // Between ACCEPT and hand-over or after a failure: keep for the session, bounded in bytes
      // (the server may not run more than a credit window ahead, so an honest one stays far below).
      this.keepEarly(bytes);
      return;
    }
    for (const { frame, end } of framesOf(bytes, this.accounting)) {
      if (frame.crcOk && frame.typ === TYP.CONTROL && frame.dst === DST.CONTROL) {
        try {
          const message = decodeControl(frame.payload);
          this.accounting.framesReceived++;
          this.accounting.framesControl++;
          this.waiter?.(message);
          if (this.waiter === undefined) {
            // ACCEPT just resolved: the rest of this message belongs to the session.
            if (end < bytes.length) this.keepEarly(bytes.subarray(end));
            return;
          }
          continue;
        } catch {
          // fall through: counted below
        }
      }
      // Before ACCEPT nothing else is ours: counted, not an error.
      this.accounting.framesReceived++;
      this.accounting.dropFrame(frame.crcOk ? 'foreign' : 'crc');
    }
  }
}

/**
 * The whole frames of one datagram or WebSocket message, in order (NDP.md §7.2: a message holds whole
 * frames; a frame never spans two). A rest that is not a whole frame is one `malformed` unit, counted
 * once, and ends the walk: nothing after a broken frame can be found again reliably.
 */
function* framesOf(bytes: Uint8Array, accounting: Accounting): Generator<{ readonly frame: DecodedFrame; readonly end: number }> {
  let offset = 0;
  while (offset < bytes.length) {
    let read: ReturnType<typeof readFrameAt>;
    try {
      read = readFrameAt(bytes, offset);
    } catch {
      read = undefined;
    }
    if (read === undefined) {
      accounting.framesReceived++;
      accounting.dropFrame('malformed');
      return;
    }
    offset = read.end;
    yield read;
  }
}

function refused(reply: { code?: string; message?: string }): NdpError {
  return new NdpError('NDP_ERR_REFUSED', `server refused the session: ${reply.code ?? 'NDP_ERR_?'}: ${reply.message ?? ''}`);
}
