/**
 * A least-recently-used cache bounded by the bytes of its values, not their count: the reader's
 * memory stays under a set figure whatever the sizes of the samples it caches.
 */
export class ByteLru<K, V> {
  private readonly entries = new Map<K, { value: V; bytes: number }>();
  private used = 0;

  /** `limitBytes` 0 disables caching. */
  constructor(readonly limitBytes: number) {
    if (!Number.isFinite(limitBytes) || limitBytes < 0) throw new RangeError(`cache limit must be ≥ 0 bytes, got ${limitBytes}`);
  }

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    // Map keeps insertion order: re-inserting makes the entry the most recently used.
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Stores `value`; a value larger than the whole limit is not stored. */
  set(key: K, value: V, bytes: number): void {
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.used -= old.bytes;
    }
    if (bytes > this.limitBytes) return;
    this.entries.set(key, { value, bytes });
    this.used += bytes;
    for (const [oldest, entry] of this.entries) {
      if (this.used <= this.limitBytes) break;
      this.entries.delete(oldest);
      this.used -= entry.bytes;
    }
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }
}
