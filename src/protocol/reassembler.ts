/**
 * Reassembly (NDP.md §4.3, §5.1): puts the fragments of sample bodies back together, in any arrival
 * order, with bounded memory, and accounts for every sample it has heard of: each is delivered once,
 * dropped once with a reason, or still pending. Nothing disappears silently.
 *
 * API (the client builds on it):
 *
 * ```ts
 * const r = new Reassembler({ maxIncompleteSamples, maxBytes, maxSampleBytes, timeoutMs, onDrop });
 * const { header, fragment } = readTransportHeader(frame.payload); // NDP_ERR_BAD_SEGMENT etc: the caller's
 * const result = r.accept(header, fragment);
 * // result.status: 'complete'  → result.body (a fresh array the caller owns), result.header, result.key
 * //                'pending'   → more fragments needed
 * //                'duplicate' → this fragment was already held, or its sample was already delivered
 * //                'late'      → its sample was already dropped (counted once, when it was dropped)
 * //                'dropped'   → this fragment made its sample fail: result.reason, result.message
 * r.expire();                    // drops samples idle for timeoutMs (accept() also does it)
 * r.drop(key, 'gone');           // abandon a sample (server said GONE, session ends …), counted under that reason
 * r.stats;                       // counters, see ReassemblerStats (samplesSeen = delivered + Σ dropped + pending)
 * ```
 *
 * A sample is identified by `sampleKey(header)` = session/epoch/position. Every sample-level drop,
 * whatever triggered it (the fragment being accepted, an eviction, a timeout, `drop`), is reported
 * once to `onDrop` and counted once in `stats.samplesDropped[reason]`.
 *
 * Checks per fragment (NDP.md §4.3): a fragment that contradicts itself (empty, offset not
 * `fragIndex·F`, last fragment not ending the body, fragCount ≠ ⌈bodyLength/F⌉) is `bad_segment`;
 * one that contradicts earlier fragments of its sample (fragCount, bodyLength, bodyCrc, sample,
 * source, EVAL flag, fragment size F) is `fragment_mismatch`; a complete body whose CRC-32 differs
 * from bodyCrc is `body_crc`. Each drops the whole sample: its identity can no longer be trusted.
 */
import { crc32 } from 'node:zlib';
import { SEGMENT_FLAG } from './registry.js';
import type { TransportHeader } from './transport-header.js';

/** Drop reasons the reassembler itself uses; `drop()` callers may add their own. */
export type ReassemblyDropReason =
  | 'bad_segment'
  | 'fragment_mismatch'
  | 'body_crc'
  | 'sample_too_large'
  | 'evicted_count'
  | 'evicted_memory'
  | 'timeout';

export interface DroppedSample {
  readonly key: string;
  /** The first fragment's header seen for the sample (undefined for `drop()` of an unseen key). */
  readonly header: TransportHeader | undefined;
  readonly reason: string;
  readonly message: string;
}

export interface ReassemblerOptions {
  /** Samples held incomplete at once; starting one more evicts the least recently progressed (`evicted_count`). Defaults to 1024. */
  readonly maxIncompleteSamples: number;
  /** Bytes of incomplete bodies held at once (each counts its whole bodyLength from its first fragment); past it the least recently progressed are evicted (`evicted_memory`). Defaults to 64 MiB. */
  readonly maxBytes: number;
  /** Largest bodyLength accepted; a larger sample is dropped at its first fragment (`sample_too_large`). Defaults to 16 MiB (and never more than maxBytes). */
  readonly maxSampleBytes: number;
  /** An incomplete sample that received no new fragment for this long is dropped (`timeout`). Defaults to 10,000 ms. */
  readonly timeoutMs: number;
  /** Keys of finished (delivered or dropped) samples remembered, so late copies are not mistaken for new samples. Defaults to 16,384. */
  readonly rememberFinished: number;
  /** Called once for every sample dropped, whatever the reason. Defaults to none. */
  readonly onDrop: ((dropped: DroppedSample) => void) | undefined;
  /** Clock in milliseconds. Defaults to `performance.now()`. */
  readonly now: () => number;
}

export const REASSEMBLER_DEFAULTS: Readonly<ReassemblerOptions> = Object.freeze({
  maxIncompleteSamples: 1024,
  maxBytes: 64 * 1024 * 1024,
  maxSampleBytes: 16 * 1024 * 1024,
  timeoutMs: 10_000,
  rememberFinished: 16_384,
  onDrop: undefined,
  now: () => performance.now(),
});

export type AcceptResult =
  | { readonly status: 'complete'; readonly key: string; readonly header: TransportHeader; readonly body: Uint8Array }
  | { readonly status: 'pending'; readonly key: string }
  | { readonly status: 'duplicate'; readonly key: string }
  | { readonly status: 'late'; readonly key: string }
  | { readonly status: 'dropped'; readonly key: string; readonly reason: ReassemblyDropReason; readonly message: string };

export interface ReassemblerStats {
  /** Samples heard of: first fragments accepted plus `drop()` calls for unseen keys. */
  samplesSeen: number;
  samplesDelivered: number;
  /** Samples dropped, by reason. */
  samplesDropped: Record<string, number>;
  /** Incomplete samples held now. */
  samplesPending: number;
  /** Bytes reserved for incomplete bodies now. */
  bytesPending: number;
  fragmentsReceived: number;
  /** Fragments whose bytes went into a body (delivered, pending, or later dropped with it). */
  fragmentsUsed: number;
  fragmentsDuplicate: number;
  fragmentsLate: number;
  /** Fragments that made their sample fail (bad_segment, fragment_mismatch, sample_too_large). */
  fragmentsRejected: number;
}

interface Pending {
  readonly key: string;
  readonly header: TransportHeader;
  readonly body: Uint8Array;
  /** One byte per fragment index: 1 once held. */
  readonly have: Uint8Array;
  received: number;
  /** Fragment size F of this sample, 0 until a fragment reveals it. */
  fragSize: number;
  deadline: number;
}

/** The identity of a sample on the wire: session/epoch/position. */
export function sampleKey(header: Pick<TransportHeader, 'session' | 'epoch' | 'position'>): string {
  return `${header.session}/${header.epoch}/${header.position}`;
}

function checkLimit(name: string, value: number, min: number): void {
  if (!(Number.isFinite(value) && value >= min)) throw new RangeError(`${name} must be a number ≥ ${min}, got ${value}`);
}

export class Reassembler {
  private readonly options: ReassemblerOptions;
  /** Insertion order = order of last progress: the first entry is the next to time out or be evicted. */
  private readonly pending = new Map<string, Pending>();
  private readonly finished = new Map<string, 'delivered' | 'dropped'>();
  private readonly counters: ReassemblerStats = {
    samplesSeen: 0,
    samplesDelivered: 0,
    samplesDropped: {},
    samplesPending: 0,
    bytesPending: 0,
    fragmentsReceived: 0,
    fragmentsUsed: 0,
    fragmentsDuplicate: 0,
    fragmentsLate: 0,
    fragmentsRejected: 0,
  };

  constructor(options: Readonly<Partial<ReassemblerOptions>> = {}) {
    this.options = { ...REASSEMBLER_DEFAULTS, ...options };
    checkLimit('maxIncompleteSamples', this.options.maxIncompleteSamples, 1);
    checkLimit('maxBytes', this.options.maxBytes, 1);
    checkLimit('maxSampleBytes', this.options.maxSampleBytes, 1);
    checkLimit('timeoutMs', this.options.timeoutMs, 0);
    checkLimit('rememberFinished', this.options.rememberFinished, 0);
  }

  /** A snapshot of the counters. Invariant: samplesSeen = samplesDelivered + Σ samplesDropped + samplesPending. */
  get stats(): ReassemblerStats {
    return { ...this.counters, samplesDropped: { ...this.counters.samplesDropped }, samplesPending: this.pending.size };
  }

  /** Sum of samplesDropped over every reason. */
  get samplesDroppedTotal(): number {
    let total = 0;
    for (const n of Object.values(this.counters.samplesDropped)) total += n;
    return total;
  }

  /** Keys of the samples held incomplete, least recently progressed first. */
  pendingKeys(): string[] {
    return [...this.pending.keys()];
  }

  /** Takes one fragment (the transport header and the fragment bytes after it). */
  accept(header: TransportHeader, fragment: Uint8Array): AcceptResult {
    const now = this.options.now();
    this.expire(now);
    this.counters.fragmentsReceived++;
    const key = sampleKey(header);
    const done = this.finished.get(key);
    if (done !== undefined) {
      if (done === 'delivered') {
        this.counters.fragmentsDuplicate++;
        return { status: 'duplicate', key };
      }
      this.counters.fragmentsLate++;
      return { status: 'late', key };
    }
    let entry = this.pending.get(key);
    const selfError = fragmentSelfError(header, fragment.length);
    if (entry === undefined) {
      this.counters.samplesSeen++;
      if (selfError !== undefined) return this.reject(key, header, 'bad_segment', selfError);
      const limit = Math.min(this.options.maxSampleBytes, this.options.maxBytes);
      if (header.bodyLength > limit) {
        return this.reject(key, header, 'sample_too_large', `sample body of ${header.bodyLength} bytes exceeds the limit of ${limit} (maxSampleBytes)`);
      }
      this.makeRoom(header.bodyLength);
      entry = {
        key,
        header,
        body: new Uint8Array(header.bodyLength),
        have: new Uint8Array(header.fragCount),
        received: 0,
        fragSize: 0,
        deadline: now + this.options.timeoutMs,
      };
      this.pending.set(key, entry);
      this.counters.bytesPending += header.bodyLength;
    } else {
      if (selfError !== undefined) return this.failPending(entry, 'bad_segment', selfError);
      const mismatch = mismatchError(entry.header, header);
      if (mismatch !== undefined) return this.failPending(entry, 'fragment_mismatch', mismatch);
    }
    const size = impliedFragmentSize(header, fragment.length);
    if (entry.fragSize !== 0 && size !== entry.fragSize) {
      return this.failPending(entry, 'fragment_mismatch', `fragment ${header.fragIndex} implies fragments of ${size} bytes, earlier ones ${entry.fragSize}`);
    }
    entry.fragSize = size;
    if (entry.have[header.fragIndex] === 1) {
      this.counters.fragmentsDuplicate++;
      return { status: 'duplicate', key };
    }
    entry.have[header.fragIndex] = 1;
    entry.received++;
    entry.body.set(fragment, header.fragOffset);
    this.counters.fragmentsUsed++;
    if (entry.received < header.fragCount) {
      entry.deadline = now + this.options.timeoutMs;
      // Move to the back: the map stays ordered by last progress.
      this.pending.delete(key);
      this.pending.set(key, entry);
      return { status: 'pending', key };
    }
    this.release(entry);
    const actual = crc32(entry.body) >>> 0;
    if (actual !== entry.header.bodyCrc >>> 0) {
      const message = `reassembled body CRC-32 0x${actual.toString(16).padStart(8, '0')} ≠ bodyCrc 0x${(entry.header.bodyCrc >>> 0).toString(16).padStart(8, '0')}`;
      this.finish(key, entry.header, 'body_crc', message);
      return { status: 'dropped', key, reason: 'body_crc', message };
    }
    this.counters.samplesDelivered++;
    this.remember(key, 'delivered');
    return { status: 'complete', key, header: entry.header, body: entry.body };
  }

  /**
   * Drops every incomplete sample whose last progress is `timeoutMs` or more ago. Returns how many.
   * `accept` calls it; call it from a timer too so a stalled stream still accounts its losses.
   */
  expire(now: number = this.options.now()): number {
    let dropped = 0;
    for (const entry of this.pending.values()) {
      if (entry.deadline > now) break;
      this.release(entry);
      this.finish(entry.key, entry.header, 'timeout', `no new fragment for ${this.options.timeoutMs} ms (${entry.received}/${entry.header.fragCount} held)`);
      dropped++;
    }
    return dropped;
  }

  /**
   * Abandons sample `key`, counted under `reason`. A key never seen is counted too (and remembered,
   * so its fragments arriving later are `late`): the caller knows of a loss the reassembler could
   * not. Returns false, counting nothing, when the sample is already finished.
   */
  drop(key: string, reason: string, message = `dropped by the caller: ${reason}`): boolean {
    if (this.finished.has(key)) return false;
    const entry = this.pending.get(key);
    if (entry !== undefined) {
      this.release(entry);
      this.finish(key, entry.header, reason, message);
    } else {
      this.counters.samplesSeen++;
      this.finish(key, undefined, reason, message);
    }
    return true;
  }

  /** Drops every incomplete sample under `reason` (end of session). Returns how many. */
  dropAll(reason: string): number {
    const keys = [...this.pending.keys()];
    for (const key of keys) this.drop(key, reason);
    return keys.length;
  }

  private makeRoom(bodyLength: number): void {
    for (const entry of this.pending.values()) {
      const tooMany = this.pending.size >= this.options.maxIncompleteSamples;
      const tooBig = this.counters.bytesPending + bodyLength > this.options.maxBytes;
      if (!tooMany && !tooBig) return;
      this.release(entry);
      const reason = tooMany ? 'evicted_count' : 'evicted_memory';
      const why = tooMany ? `${this.options.maxIncompleteSamples} incomplete samples held (maxIncompleteSamples)` : `${this.options.maxBytes} bytes would be exceeded (maxBytes)`;
      this.finish(entry.key, entry.header, reason, `evicted for a new sample: ${why}`);
    }
  }

  private reject(key: string, header: TransportHeader, reason: ReassemblyDropReason, message: string): AcceptResult {
    this.counters.fragmentsRejected++;
    this.finish(key, header, reason, message);
    return { status: 'dropped', key, reason, message };
  }

  private failPending(entry: Pending, reason: ReassemblyDropReason, message: string): AcceptResult {
    this.release(entry);
    return this.reject(entry.key, entry.header, reason, message);
  }

  private release(entry: Pending): void {
    this.pending.delete(entry.key);
    this.counters.bytesPending -= entry.header.bodyLength;
  }

  private finish(key: string, header: TransportHeader | undefined, reason: string, message: string): void {
    this.counters.samplesDropped[reason] = (this.counters.samplesDropped[reason] ?? 0) + 1;
    this.remember(key, 'dropped');
    this.options.onDrop?.({ key, header, reason, message });
  }

  private remember(key: string, outcome: 'delivered' | 'dropped'): void {
    if (this.options.rememberFinished === 0) return;
    this.finished.set(key, outcome);
    if (this.finished.size > this.options.rememberFinished) {
      const oldest = this.finished.keys().next();
      if (oldest.done !== true) this.finished.delete(oldest.value);
    }
  }
}

/** What one fragment says about F, the size of every fragment but the last (NDP.md §5.1). */
function impliedFragmentSize(h: TransportHeader, length: number): number {
  if (h.fragCount === 1) return h.bodyLength;
  return h.fragIndex < h.fragCount - 1 ? length : h.fragOffset / (h.fragCount - 1);
}

/** Why a fragment contradicts itself (NDP.md §4.2, §5.1), or undefined. */
function fragmentSelfError(h: TransportHeader, length: number): string | undefined {
  const where = `fragment ${h.fragIndex}/${h.fragCount} at ${h.fragOffset}+${length} of a ${h.bodyLength}-byte body`;
  if (h.fragCount === 0 || h.fragIndex >= h.fragCount) return `${where}: index outside count`;
  if (length === 0) return `${where}: empty fragment`;
  const last = h.fragIndex === h.fragCount - 1;
  if (!last) {
    if (h.fragOffset !== h.fragIndex * length) return `${where}: offset is not index × fragment size`;
    if (Math.ceil(h.bodyLength / length) !== h.fragCount) return `${where}: fragCount is not ⌈bodyLength / ${length}⌉`;
    return undefined;
  }
  if (h.fragOffset + length !== h.bodyLength) return `${where}: the last fragment does not end the body`;
  if (h.fragCount === 1) return undefined;
  const f = h.fragOffset / (h.fragCount - 1);
  if (!Number.isInteger(f) || length > f) return `${where}: offset is not index × fragment size`;
  return undefined;
}

/** Why a fragment contradicts the first fragment seen of its sample, or undefined. */
function mismatchError(first: TransportHeader, h: TransportHeader): string | undefined {
  const fields = ['fragCount', 'bodyLength', 'bodyCrc', 'sample', 'source'] as const;
  for (const field of fields) {
    if (first[field] !== h[field]) return `fragment ${h.fragIndex} says ${field} ${h[field]}, an earlier fragment of the sample said ${first[field]}`;
  }
  if ((first.flags & SEGMENT_FLAG.EVAL) !== (h.flags & SEGMENT_FLAG.EVAL)) return `fragment ${h.fragIndex} disagrees on the EVAL flag`;
  return undefined;
}
