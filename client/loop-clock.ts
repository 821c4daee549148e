/**
 * A clock for the receiver's NACK timing that stops while the event loop is blocked. A stall (a
 * long synchronous step, GC, a cold JIT) lets datagrams pile up unread in the socket buffer; on
 * wall time the first timer tick after it finds every NACK overdue and repeats them, though their
 * retransmissions are sitting in that buffer, and the server then sends each frame twice. Readings
 * come at least once per session tick while the loop runs, so a gap between two readings longer
 * than `maxStepMs` is a stall and counts only `maxStepMs`.
 */
export class LoopClock {
  private elapsedMs = 0;
  private lastWallMs: number;

  /** `maxStepMs`: the most one reading advances the clock (the session passes 2 × its tick). */
  constructor(
    private readonly maxStepMs: number,
    startWallMs = performance.now(),
  ) {
    this.lastWallMs = startWallMs;
  }

  /** The clock at wall time `wallMs` (performance.now() by default), ms since construction less stalls. */
  read(wallMs = performance.now()): number {
    this.elapsedMs += Math.min(Math.max(0, wallMs - this.lastWallMs), this.maxStepMs);
    this.lastWallMs = Math.max(this.lastWallMs, wallMs);
    return this.elapsedMs;
  }
}
