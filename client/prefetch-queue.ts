/**
 * A bounded queue between a producer (the receive loop) and a consumer (the training loop): the
 * producer keeps up to `capacity` items ready and waits when the queue is full (backpressure reaches
 * the credit window); the consumer's waits on an empty queue are the data stall, measured here.
 */

export interface PrefetchStats {
  /** Items the consumer has taken. */
  readonly taken: number;
  /** Milliseconds the consumer spent waiting for an item (the data stall). */
  readonly stallMs: number;
  /** Times the consumer found the queue empty and had to wait. */
  readonly stalls: number;
  /** Milliseconds the producer spent waiting for space (the consumer was the bottleneck). */
  readonly backpressureMs: number;
}

export class PrefetchQueue<T> implements AsyncIterable<T> {
  readonly capacity: number;
  private readonly items: T[] = [];
  private ended = false;
  private failure: { error: unknown } | undefined;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;
  private taken = 0;
  private stallMs = 0;
  private stalls = 0;
  private backpressureMs = 0;

  /** @param capacity items kept ready; ≥ 1. */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`prefetch capacity must be an integer ≥ 1, got ${capacity}`);
    this.capacity = capacity;
  }

  get length(): number {
    return this.items.length;
  }

  get stats(): PrefetchStats {
    return { taken: this.taken, stallMs: this.stallMs, stalls: this.stalls, backpressureMs: this.backpressureMs };
  }

  /** Adds an item; resolves once there is room for the next one (the producer awaits this). */
  async push(item: T): Promise<void> {
    if (this.ended) throw new Error('push after end of the prefetch queue');
    this.items.push(item);
    this.wakeConsumer?.();
    if (this.items.length >= this.capacity) {
      const start = performance.now();
      while (this.items.length >= this.capacity && !this.ended) {
        await new Promise<void>((resolve) => {
          this.wakeProducer = resolve;
        });
      }
      this.backpressureMs += performance.now() - start;
    }
  }

  /** No more items: the consumer drains what is queued, then its iteration ends. */
  end(): void {
    this.ended = true;
    this.wakeConsumer?.();
    this.wakeProducer?.();
  }

  /** The producer failed: the consumer gets the queued items, then this error. */
  fail(error: unknown): void {
    this.failure ??= { error };
    this.end();
  }

  /** Next item, or undefined at the end. */
  async take(): Promise<T | undefined> {
    if (this.items.length === 0 && !this.ended) {
      this.stalls++;
      const start = performance.now();
      while (this.items.length === 0 && !this.ended) {
        await new Promise<void>((resolve) => {
          this.wakeConsumer = resolve;
        });
      }
      this.stallMs += performance.now() - start;
    }
    const item = this.items.shift();
    if (item === undefined) {
      if (this.failure !== undefined) throw this.failure.error;
      return undefined;
    }
    this.taken++;
    this.wakeProducer?.();
    return item;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const item = await this.take();
      if (item === undefined) return;
      yield item;
    }
  }
}
