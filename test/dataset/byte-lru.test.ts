/**
 * ByteLru against a plain reference model of byte-bounded LRU (an array in recency order): the same
 * hits, sizes and byte totals after every operation of long seeded random sequences, the byte limit
 * at its bound, and values larger than the limit not stored.
 */
import t from 'tap';
import { ByteLru } from '../../src/dataset/byte-lru.js';
import { seededRandom } from '../../src/seeded-random.js';

class ReferenceLru {
  readonly order: { key: number; value: string; bytes: number }[] = [];
  constructor(readonly limit: number) {}
  get bytes(): number {
    return this.order.reduce((sum, e) => sum + e.bytes, 0);
  }
  get(key: number): string | undefined {
    const i = this.order.findIndex((e) => e.key === key);
    if (i < 0) return undefined;
    const [entry] = this.order.splice(i, 1);
    this.order.push(entry!);
    return entry!.value;
  }
  set(key: number, value: string, bytes: number): void {
    const i = this.order.findIndex((e) => e.key === key);
    if (i >= 0) this.order.splice(i, 1);
    if (bytes > this.limit) return;
    this.order.push({ key, value, bytes });
    while (this.bytes > this.limit) this.order.shift();
  }
}

t.test('matches the reference model on seeded random get/set sequences', async (t) => {
  for (const [seed, limit] of [[1, 0], [2, 10], [3, 100], [4, 1000]] as const) {
    const next = seededRandom(seed);
    const lru = new ByteLru<number, string>(limit);
    const ref = new ReferenceLru(limit);
    let mismatches = 0;
    for (let op = 0; op < 5000; op++) {
      const key = Math.floor(next() * 40);
      if (next() < 0.5) {
        if (lru.get(key) !== ref.get(key)) mismatches++;
      } else {
        const bytes = Math.floor(next() * (limit + 5));
        lru.set(key, `v${op}`, bytes);
        ref.set(key, `v${op}`, bytes);
      }
      if (lru.bytes !== ref.bytes || lru.size !== ref.order.length || lru.bytes > limit) mismatches++;
    }
    t.equal(mismatches, 0, `limit ${limit}: same hits, size and bytes after each of 5000 operations`);
  }
});

t.test('the limit at its bound', async (t) => {
  const lru = new ByteLru<string, number>(10);
  lru.set('a', 1, 10);
  t.equal(lru.get('a'), 1, 'a value of exactly the limit is stored');
  lru.set('b', 2, 11);
  t.equal(lru.get('b'), undefined, 'a value one byte over the limit is not stored');
  t.equal(lru.get('a'), 1, 'and does not evict anything');
  lru.set('c', 3, 1);
  t.same([lru.get('a'), lru.get('c'), lru.bytes], [undefined, 3, 1], 'the least recently used entry goes first');
  lru.clear();
  t.same([lru.size, lru.bytes], [0, 0]);
  t.throws(() => new ByteLru(-1), RangeError);
});
