/**
 * A token bucket in bytes (NDP.md §7.5 pacing). `delay(n)` says how long to wait before `n` bytes
 * may go; `take(n)` spends them. The bucket may go into debt by one item so a frame larger than
 * the burst still gets out.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  /** `rate` bytes/s, `burst` bytes (the bucket's depth). */
  constructor(private rate: number, private burst: number, now: number = performance.now()) {
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
    }
  }

  /** Milliseconds until a send may go (0: now). */
  delay(now: number = performance.now()): number {
    this.refill(now);
    return this.tokens > 0 ? 0 : (-this.tokens * 1000) / this.rate;
  }

  take(bytes: number, now: number = performance.now()): void {
    this.refill(now);
    this.tokens -= bytes;
  }
}

/** Burst of a session bucket: 2 ms of its rate, at least two datagrams (NDP.md §7.5). */
export function burstFor(rate: number, datagram: number): number {
  return Math.max(2 * datagram, rate * 0.002);
}
