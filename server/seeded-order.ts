/**
 * The deterministic hash, generator and permutation of NDP.md §7.8 (and the injection draw of §7.12).
 * Everything is unsigned 32-bit integer arithmetic, so any implementation of the spec reproduces the
 * same orders bit for bit.
 */

/** lowbias32 integer hash (NDP.md §7.8 `mix32`). */
export function mix32(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/** Domain tag of shuffle seeds: ASCII "ndp1". */
const SHUFFLE_TAG = 0x6e647031;

/** Seed of the permutation of source `source`, pass `pass` (NDP.md §7.8 `seedFor`). */
export function seedFor(seed: number, source: number, pass: number): number {
  return mix32(mix32(mix32((seed ^ SHUFFLE_TAG) >>> 0) ^ source) ^ pass);
}

/** Counter-based generator: state += golden ratio, output mix32(state). */
export class SeededGenerator {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    return mix32(this.state);
  }

  /** Uniform integer in [0, n) by rejection (no modulo bias), 1 ≤ n ≤ 2^32. */
  below(n: number): number {
    const limit = 2 ** 32 - (2 ** 32 % n);
    let r = this.next();
    while (r >= limit) r = this.next();
    return r % n;
  }
}

/** Fisher–Yates permutation of 0..n-1 (NDP.md §7.8 `permutation`); identity when `shuffle` is false. */
export function permutation(n: number, seed: number, shuffle = true): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  if (!shuffle) return a;
  const generator = new SeededGenerator(seed);
  for (let i = n - 1; i >= 1; i--) {
    const k = generator.below(i + 1);
    const t = a[i]!;
    a[i] = a[k]!;
    a[k] = t;
  }
  return a;
}

/** Domain tags of the fault-injection draw (NDP.md §7.12): "inj1" and "bit1". */
const INJECT_TAG = 0x696e6a31;
const BIT_TAG = 0x62697431;

/** The uint32 draw for seq `seq` under injection seed `seed`; u = draw / 2^32. */
export function injectionDraw(seed: number, seq: number): number {
  return mix32(mix32((seed ^ INJECT_TAG) >>> 0) ^ seq);
}

/** Which bit (counted from the first byte after the frame header) a corruption flips. */
export function injectionBit(draw: number, bits: number): number {
  return mix32((draw ^ BIT_TAG) >>> 0) % bits;
}
