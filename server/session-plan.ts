/**
 * A session's sample order (NDP.md §7.8): per-source seeded permutations, sharded so that the ranks
 * of a world are disjoint with equal counts, mixed by quotas and interleaved deterministically.
 * Pure: the order depends only on the resolved parameters and the datasets' sample counts.
 */
import { permutation, seedFor } from './seeded-order.js';

export interface PlanSourceInput {
  /** Samples in the dataset (N_j). */
  readonly samples: number;
  /** Mixing weight; undefined everywhere means the natural mix. */
  readonly weight?: number | undefined;
}

export interface PlanOptions {
  readonly rank: number;
  readonly world: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly remainder: 'pad' | 'drop';
}

/** One position of the order: which source, and which sample of its dataset. */
export interface PlannedSample {
  readonly epoch: number;
  readonly position: number;
  readonly source: number;
  readonly sample: number;
}

/** Largest-remainder apportionment of `total` units by `weights` (ties to the lower index). */
export function quotas(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (total * w) / sum);
  const out = exact.map((x) => Math.floor(x));
  let left = total - out.reduce((a, b) => a + b, 0);
  const byFraction = exact.map((x, j) => ({ j, frac: x - Math.floor(x) })).sort((a, b) => b.frac - a.frac || a.j - b.j);
  for (const { j } of byFraction) {
    if (left <= 0) break;
    out[j]! += 1;
    left--;
  }
  return out;
}

export class SessionPlan {
  /** Per-rank samples of each source per pass (n_j). */
  readonly shardSizes: readonly number[];
  /** Per-epoch quota of each source (m_j). */
  readonly quotas: readonly number[];
  /** M = Σ n_j. */
  readonly samplesPerEpoch: number;
  private readonly permutations = new Map<string, Uint32Array>();
  /** The interleaving, computed on first use (the same for every epoch). */
  private scheduleCache: Uint8Array | undefined;

  constructor(private readonly sources: readonly PlanSourceInput[], private readonly options: PlanOptions) {
    const { world } = options;
    this.shardSizes = sources.map((s) => (options.remainder === 'pad' ? Math.ceil(s.samples / world) : Math.floor(s.samples / world)));
    this.samplesPerEpoch = this.shardSizes.reduce((a, b) => a + b, 0);
    const natural = sources.every((s) => s.weight === undefined);
    this.quotas = natural ? [...this.shardSizes] : quotas(this.samplesPerEpoch, sources.map((s) => s.weight ?? 1));
    // A weighted quota on a source with no samples for this rank could never be filled.
    this.quotas.forEach((m, j) => {
      if (m > 0 && this.shardSizes[j] === 0) throw new RangeError(`source ${j} has no samples for rank ${options.rank} of ${world} (remainder=${options.remainder}) but a quota of ${m}`);
    });
  }

  /** Source index of every position of an epoch (the interleaving; the same for every epoch). */
  schedule(): Uint8Array {
    if (this.scheduleCache !== undefined) return this.scheduleCache;
    const M = this.samplesPerEpoch;
    const k = this.quotas.length;
    const out = new Uint8Array(M);
    const taken = new Array<number>(k).fill(0);
    for (let t = 0; t < M; t++) {
      let best = -1;
      let bestScore = -Infinity;
      for (let j = 0; j < k; j++) {
        const m = this.quotas[j]!;
        if (taken[j]! >= m) continue;
        const score = (t + 1) * m - taken[j]! * M;
        if (score > bestScore) {
          best = j;
          bestScore = score;
        }
      }
      out[t] = best;
      taken[best]! += 1;
    }
    this.scheduleCache = out;
    return out;
  }

  /** Sample index (in its dataset) of item `k` of source `j`'s endless stream. */
  sampleOf(j: number, k: number): number {
    const n = this.shardSizes[j]!;
    const N = this.sources[j]!.samples;
    const pass = Math.floor(k / n);
    const i = k % n;
    return this.permutationOf(j, pass)[(this.options.rank + i * this.options.world) % N]!;
  }

  private permutationOf(j: number, pass: number): Uint32Array {
    const key = `${j}:${pass}`;
    let p = this.permutations.get(key);
    if (p === undefined) {
      p = permutation(this.sources[j]!.samples, seedFor(this.options.seed, j, pass), this.options.shuffle);
      // Streams move forward: keep only the newest two passes of each source.
      for (const old of this.permutations.keys()) {
        const [oj, op] = old.split(':').map(Number);
        if (oj === j && op! < pass - 1) this.permutations.delete(old);
      }
      this.permutations.set(key, p);
    }
    return p;
  }

  /** Iterates the order from `start` (inclusive) to the end of epoch `epochs − 1`. */
  *iterate(start: { epoch: number; position: number }, epochs: number): Generator<PlannedSample> {
    const M = this.samplesPerEpoch;
    if (M === 0) return;
    const schedule = this.schedule();
    let { epoch, position } = start;
    if (position >= M) {
      epoch += 1;
      position = 0;
    }
    for (; epoch < epochs; epoch++, position = 0) {
      const taken = this.quotas.map(() => 0);
      for (let t = 0; t < position; t++) taken[schedule[t]!]! += 1;
      for (let t = position; t < M; t++) {
        const j = schedule[t]!;
        const k = epoch * this.quotas[j]! + taken[j]!;
        taken[j]! += 1;
        yield { epoch, position: t, source: j, sample: this.sampleOf(j, k) };
      }
    }
  }

  /** Samples from `start` to the end of the last epoch. */
  remaining(start: { epoch: number; position: number }, epochs: number): number {
    const M = this.samplesPerEpoch;
    const total = epochs * M;
    const at = Math.min(start.epoch * M + start.position, total);
    return total - at;
  }
}
