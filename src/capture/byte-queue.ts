/** A growable FIFO of bytes: append at the end, read and consume at the front, no quadratic copying. */
export class ByteQueue {
  private buffer = new Uint8Array(4096);
  private start = 0;
  private end = 0;

  get length(): number {
    return this.end - this.start;
  }

  /** Copies `bytes` in (callers may reuse theirs afterwards). */
  push(bytes: Uint8Array): void {
    if (this.buffer.length - this.end < bytes.length) {
      const live = this.length;
      const needed = live + bytes.length;
      if (needed <= this.buffer.length) {
        this.buffer.copyWithin(0, this.start, this.end);
      } else {
        const grown = new Uint8Array(Math.max(needed, this.buffer.length * 2));
        grown.set(this.buffer.subarray(this.start, this.end), 0);
        this.buffer = grown;
      }
      this.start = 0;
      this.end = live;
    }
    this.buffer.set(bytes, this.end);
    this.end += bytes.length;
  }

  /** A view of the first `n` bytes (valid until the next push). */
  peek(n: number): Uint8Array {
    return this.buffer.subarray(this.start, this.start + n);
  }

  consume(n: number): void {
    this.start += n;
    if (this.start === this.end) this.start = this.end = 0;
  }
}
