/**
 * The frames a `repair` session may have to send again (NDP.md §7.6): every seq from the client's
 * ack up to the next unsent seq, bounded in bytes. When full, the oldest frame is evicted; a NACK
 * for an evicted seq is answered with GONE `evicted`. Frames are held as the clean first-
 * transmission bytes (never the injected corruption).
 *
 * Held as a queue of parallel arrays with a moving head, not a Map: a Map that is emptied from the
 * front keeps its deleted entries until it rehashes, and finding its oldest entry walks past all of
 * them, which made every eviction of a full buffer cost ~11 µs (~10k steps) per frame.
 */

/** A seq whose frames a routing rule dropped: answered with GONE `routed`, never resent. */
export const ROUTED = 'routed' as const;

export type HeldFrame = Uint8Array | typeof ROUTED;

/** Consumed slots before the queue arrays are compacted (also only once they are half the arrays). */
const COMPACT_AFTER = 1024;

export class RetransmitBuffer {
  /** Seqs held, increasing; entries before `head` were acknowledged or evicted. */
  private seqs: number[] = [];
  /** `frames[i]` is the frame of `seqs[i]`; undefined once consumed, so the bytes are released at once. */
  private frames: Array<HeldFrame | undefined> = [];
  private head = 0;
  private heldBytes = 0;
  /** Every seq below this was acknowledged or evicted. */
  private low = 0;
  /** Seqs in [ackedBelow, low) were evicted before they were acknowledged. */
  private ackedBelow = 0;
  evictions = 0;

  constructor(readonly limitBytes: number) {}

  get bytes(): number {
    return this.heldBytes;
  }

  get size(): number {
    return this.seqs.length - this.head;
  }

  /** Holds the frame first sent as `seq` (seqs arrive in increasing order). */
  hold(seq: number, frame: HeldFrame): void {
    this.seqs.push(seq);
    this.frames.push(frame);
    if (frame !== ROUTED) this.heldBytes += frame.length;
    while (this.heldBytes > this.limitBytes && this.head < this.seqs.length) {
      this.low = this.seqs[this.head]! + 1;
      this.consumeOldest();
      this.evictions++;
    }
    this.compact();
  }

  /** The client acknowledged every seq below `ack`: forget them. */
  release(ack: number): void {
    while (this.head < this.seqs.length && this.seqs[this.head]! < ack) this.consumeOldest();
    if (ack > this.low) this.low = ack;
    if (ack > this.ackedBelow) this.ackedBelow = ack;
    this.compact();
  }

  /** What is known about `seq`: its frame, ROUTED, 'evicted', or undefined (acknowledged / never sent). */
  lookup(seq: number): HeldFrame | 'evicted' | undefined {
    const at = this.indexOf(seq);
    if (at !== undefined) return this.frames[at];
    if (seq >= this.ackedBelow && seq < this.low) return 'evicted';
    return undefined;
  }

  private consumeOldest(): void {
    const frame = this.frames[this.head];
    if (frame !== undefined && frame !== ROUTED) this.heldBytes -= frame.length;
    this.frames[this.head] = undefined;
    this.head++;
  }

  /** Index of `seq` among the held entries: direct when seqs are consecutive (a session's are), else a binary search. */
  private indexOf(seq: number): number | undefined {
    const first = this.seqs[this.head];
    if (first === undefined || seq < first) return undefined;
    const direct = this.head + (seq - first);
    if (this.seqs[direct] === seq) return direct;
    let lo = this.head;
    let hi = this.seqs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const at = this.seqs[mid]!;
      if (at === seq) return mid;
      if (at < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  private compact(): void {
    if (this.head < COMPACT_AFTER || this.head * 2 < this.seqs.length) return;
    this.seqs = this.seqs.slice(this.head);
    this.frames = this.frames.slice(this.head);
    this.head = 0;
  }
}
