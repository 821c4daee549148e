/**
 * The frames a `repair` session may have to send again (NDP.md §7.6): every seq from the client's
 * ack up to the next unsent seq, bounded in bytes. When full, the oldest frame is evicted; a NACK
 * for an evicted seq is answered with GONE `evicted`. Frames are held as the clean first-
 * transmission bytes (never the injected corruption).
 */

/** A seq whose frames a routing rule dropped: answered with GONE `routed`, never resent. */
export const ROUTED = 'routed' as const;

export type HeldFrame = Uint8Array | typeof ROUTED;

export class RetransmitBuffer {
  /** Insertion order is seq order, so the first key is always the oldest. */
  private readonly frames = new Map<number, HeldFrame>();
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
    return this.frames.size;
  }

  /** Holds the frame first sent as `seq` (seqs arrive in increasing order). */
  hold(seq: number, frame: HeldFrame): void {
    this.frames.set(seq, frame);
    if (frame !== ROUTED) this.heldBytes += frame.length;
    while (this.heldBytes > this.limitBytes && this.frames.size > 0) this.evictOldest();
  }

  private evictOldest(): void {
    const first = this.frames.entries().next();
    if (first.done === true) return;
    const [seq, frame] = first.value;
    this.frames.delete(seq);
    if (frame !== ROUTED) this.heldBytes -= frame.length;
    this.low = seq + 1;
    this.evictions++;
  }

  /** The client acknowledged every seq below `ack`: forget them. */
  release(ack: number): void {
    for (const [seq, frame] of this.frames) {
      if (seq >= ack) break;
      this.frames.delete(seq);
      if (frame !== ROUTED) this.heldBytes -= frame.length;
    }
    if (ack > this.low) this.low = ack;
    if (ack > this.ackedBelow) this.ackedBelow = ack;
  }

  /** What is known about `seq`: its frame, ROUTED, 'evicted', or undefined (acknowledged / never sent). */
  lookup(seq: number): HeldFrame | 'evicted' | undefined {
    const frame = this.frames.get(seq);
    if (frame !== undefined) return frame;
    if (seq >= this.ackedBelow && seq < this.low) return 'evicted';
    return undefined;
  }
}
