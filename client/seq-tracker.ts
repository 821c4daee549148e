/**
 * Receiver-side sequence accounting for one session (NDP.md §7.5, §7.6): which seqs arrived, which
 * are missing (to NACK), which were given up (GONE, or locally in a lossy session), and the
 * cumulative `ack` the client grants credit from: every seq < ack was received or given up.
 * Seqs start at 0 in every session; a stream of 2^32 frames is out of scope (the server ends first).
 */

import { NackRetryTimer, type NackRetryOptions } from './nack-retry-timer.js';

export type GiveUpReason = 'gone' | 'lost';

export type MarkResult = 'new' | 'duplicate' | 'late';

export class SeqTracker {
  /** Every seq below this was received or given up. */
  ack = 0;
  /** Highest seq received, -1 before any. */
  maxSeq = -1;
  /** One past the last seq of the stream, once END said it. */
  endSeq: number | undefined;
  /** Seqs noticed missing (a later seq arrived first, or END announced them). */
  missing = 0;
  /** Noticed-missing seqs that arrived afterwards (retransmitted, or just reordered). */
  repaired = 0;
  private readonly received = new Set<number>();
  /** seq → when it was noticed missing (ms); deleted when it arrives or is given up. */
  private readonly gapSince = new Map<number, number>();
  /** seq → last time it was NACKed (ms) and how many NACKs named it. */
  private readonly nacked = new Map<number, { at: number; count: number }>();
  /** When a NACKed seq is NACKed again: after the measured round trip (nack-retry-timer.ts). */
  readonly retry: NackRetryTimer;
  /** Given-up seqs and why, kept until `prune` (sample attribution needs them after ack passed). */
  private readonly givenUp = new Map<number, GiveUpReason>();

  constructor(retry: NackRetryOptions = {}) {
    this.retry = new NackRetryTimer(retry);
  }

  /** Records the arrival of `seq` at time `now`; `retransmitted`: its frame carries the RETRANSMIT flag. */
  mark(seq: number, now: number, retransmitted = false): MarkResult {
    if (seq < this.ack || this.received.has(seq)) return this.givenUp.has(seq) ? 'late' : 'duplicate';
    if (this.givenUp.has(seq)) return 'late';
    if (this.gapSince.delete(seq)) {
      this.repaired++;
      const nack = this.nacked.get(seq);
      // Karn's rule: only a retransmission that answers the one NACK sent measures the round trip.
      if (retransmitted && nack?.count === 1) this.retry.sample(now - nack.at);
      this.nacked.delete(seq);
    }
    if (seq > this.maxSeq) {
      for (let s = this.maxSeq + 1; s < seq; s++) this.notice(s, now);
      this.maxSeq = seq;
    }
    this.received.add(seq);
    this.advance();
    return 'new';
  }

  /** END: the stream has `nextSeq` frames; seqs not yet seen up to it are missing. */
  end(nextSeq: number, now: number): void {
    this.endSeq = nextSeq;
    for (let s = this.maxSeq + 1; s < nextSeq; s++) this.notice(s, now);
    if (nextSeq - 1 > this.maxSeq) this.maxSeq = nextSeq - 1;
  }

  /** Gives up seqs `first..last` (inclusive) that have not arrived. Returns how many it gave up. */
  giveUp(first: number, last: number, reason: GiveUpReason): number {
    let n = 0;
    const top = Math.min(last, this.endSeq !== undefined ? this.endSeq - 1 : this.maxSeq);
    for (let s = Math.max(first, this.ack); s <= top; s++) {
      if (this.received.has(s) || this.givenUp.has(s)) continue;
      this.gapSince.delete(s);
      this.nacked.delete(s);
      this.givenUp.set(s, reason);
      n++;
    }
    this.advance();
    return n;
  }

  /** Gives up every gap noticed at or before `before` (lossy sessions, and a last resort). */
  giveUpOlderThan(before: number, reason: GiveUpReason): number {
    let n = 0;
    for (const [seq, since] of this.gapSince) {
      if (since > before) continue;
      n += this.giveUp(seq, seq, reason);
    }
    return n;
  }

  /**
   * Missing seqs to NACK now: those noticed at least `delayMs` ago and not NACKed within the retry
   * wait (`retry.waitMs`), as inclusive ranges, at most `maxRanges`. Marks them NACKed at `now`.
   */
  nackRanges(now: number, delayMs: number, maxRanges: number): Array<[number, number]> {
    const wait = this.retry.waitMs;
    const due: number[] = [];
    for (const [seq, since] of this.gapSince) {
      if (now - since < delayMs) continue;
      const last = this.nacked.get(seq);
      if (last !== undefined && now - last.at < wait) continue;
      due.push(seq);
    }
    due.sort((a, b) => a - b);
    const ranges: Array<[number, number]> = [];
    let repeated = false;
    for (const seq of due) {
      const tail = ranges[ranges.length - 1];
      if (tail !== undefined && tail[1] === seq - 1) tail[1] = seq;
      else if (ranges.length < maxRanges) ranges.push([seq, seq]);
      else break;
      const last = this.nacked.get(seq);
      if (last === undefined) {
        this.nacked.set(seq, { at: now, count: 1 });
      } else {
        last.at = now;
        last.count++;
        repeated = true;
      }
    }
    if (repeated) this.retry.retried();
    return ranges;
  }

  /** Seqs currently missing. */
  get gaps(): number {
    return this.gapSince.size;
  }

  /** Why `seq` was given up, if it was and is not yet pruned. */
  reasonFor(seq: number): GiveUpReason | undefined {
    return this.givenUp.get(seq);
  }

  /** The first give-up reason in `first..last`, scanning at most `limit` seqs. */
  reasonIn(first: number, last: number, limit = 65536): GiveUpReason | undefined {
    for (let s = first; s <= last && s < first + limit; s++) {
      const r = this.givenUp.get(s);
      if (r !== undefined) return r;
    }
    return undefined;
  }

  /** Forgets give-up reasons below `seq` (their samples are resolved). */
  prune(seq: number): void {
    for (const s of this.givenUp.keys()) if (s < seq) this.givenUp.delete(s);
  }

  /** True when the whole stream is accounted for: END seen and ack reached it. */
  get complete(): boolean {
    return this.endSeq !== undefined && this.ack >= this.endSeq;
  }

  private notice(seq: number, now: number): void {
    if (this.givenUp.has(seq) || this.gapSince.has(seq)) return;
    this.gapSince.set(seq, now);
    this.missing++;
  }

  private advance(): void {
    while (this.received.has(this.ack) || this.givenUp.has(this.ack)) {
      this.received.delete(this.ack);
      this.ack++;
    }
  }
}
