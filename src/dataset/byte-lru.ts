/**
 * A least-recently-used cache bounded by the bytes of its values, not their count: the reader's
 * memory stays under a set figure whatever the sizes of the samples it caches.
 *
 * Recency is an explicit doubly linked list rather than a Map's insertion order: finding the oldest
 * entry by iterating a Map walks over the slots of every entry deleted since V8 last compacted the
 * table, which made eviction O(cache size) per insert and took 44% of a data server's CPU on a
 * dataset larger than its cache (profiled with bench/server-throughput.ts).
 */
interface Node<K, V> {
  key: K;
  value: V;
  bytes: number;
  /** Towards the least recently used end. */
  older: Node<K, V> | undefined;
  /** Towards the most recently used end. */
  newer: Node<K, V> | undefined;
}

export class ByteLru<K, V> {
  private readonly nodes = new Map<K, Node<K, V>>();
  private oldest: Node<K, V> | undefined;
  private newest: Node<K, V> | undefined;
  private used = 0;

  /** `limitBytes` 0 disables caching. */
  constructor(readonly limitBytes: number) {
    if (!Number.isFinite(limitBytes) || limitBytes < 0) throw new RangeError(`cache limit must be ≥ 0 bytes, got ${limitBytes}`);
  }

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.nodes.size;
  }

  get(key: K): V | undefined {
    const node = this.nodes.get(key);
    if (node === undefined) return undefined;
    this.unlink(node);
    this.append(node);
    return node.value;
  }

  /** Stores `value`; a value larger than the whole limit is not stored. */
  set(key: K, value: V, bytes: number): void {
    const old = this.nodes.get(key);
    if (old !== undefined) this.remove(old);
    if (bytes > this.limitBytes) return;
    const node: Node<K, V> = { key, value, bytes, older: undefined, newer: undefined };
    this.nodes.set(key, node);
    this.append(node);
    this.used += bytes;
    while (this.used > this.limitBytes && this.oldest !== undefined) this.remove(this.oldest);
  }

  clear(): void {
    this.nodes.clear();
    this.oldest = undefined;
    this.newest = undefined;
    this.used = 0;
  }

  private remove(node: Node<K, V>): void {
    this.unlink(node);
    this.nodes.delete(node.key);
    this.used -= node.bytes;
  }

  private append(node: Node<K, V>): void {
    node.older = this.newest;
    node.newer = undefined;
    if (this.newest !== undefined) this.newest.newer = node;
    else this.oldest = node;
    this.newest = node;
  }

  private unlink(node: Node<K, V>): void {
    if (node.older !== undefined) node.older.newer = node.newer;
    else this.oldest = node.newer;
    if (node.newer !== undefined) node.newer.older = node.older;
    else this.newest = node.older;
    node.older = undefined;
    node.newer = undefined;
  }
}
