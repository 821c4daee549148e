/**
 * The deterministic order of NDP.md §7.8: hash, generator and permutation checked against a plain
 * BigInt transcription of the spec's pseudo-code; shards, quotas and interleaving checked as
 * properties over random datasets, worlds and weights (fast-check).
 */
import t from 'tap';
import fc from 'fast-check';
import { SeededGenerator, injectionDraw, mix32, permutation, seedFor } from '../../server/seeded-order.js';
import { SessionPlan, quotas } from '../../server/session-plan.js';

const M32 = (1n << 32n) - 1n;
/** mix32 exactly as NDP.md §7.8 writes it, in BigInt arithmetic. */
function specMix32(value: number): number {
  let x = BigInt(value >>> 0);
  x ^= x >> 16n;
  x = (x * 0x7feb352dn) & M32;
  x ^= x >> 15n;
  x = (x * 0x846ca68bn) & M32;
  x ^= x >> 16n;
  return Number(x);
}

function specPermutation(n: number, seed: number): number[] {
  let state = BigInt(seed >>> 0);
  const next = () => {
    state = (state + 0x9e3779b9n) & M32;
    return specMix32(Number(state));
  };
  const below = (m: number) => {
    const limit = 2 ** 32 - (2 ** 32 % m);
    let r = next();
    while (r >= limit) r = next();
    return r % m;
  };
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i >= 1; i--) {
    const k = below(i + 1);
    [a[i], a[k]] = [a[k]!, a[i]!];
  }
  return a;
}

t.test('mix32, seedFor, permutation match the spec transcription', async (t) => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (x) => mix32(x) === specMix32(x)), { numRuns: 2000 });
  t.equal(mix32(0), 0, 'lowbias32 fixes 0');
  t.equal(seedFor(0, 0, 0), specMix32(specMix32(specMix32(0x6e647031) ^ 0) ^ 0));
  for (const [n, seed] of [[1, 0], [2, 1], [10, 7], [1000, 0xdeadbeef]] as const) {
    t.same([...permutation(n, seed)], specPermutation(n, seed), `permutation(${n}, ${seed})`);
  }
  t.same([...permutation(5, 9, false)], [0, 1, 2, 3, 4], 'shuffle=false is the identity');
  // Regression vector: the first values any implementation must produce.
  t.same([...permutation(8, seedFor(0, 0, 0))], specPermutation(8, seedFor(0, 0, 0)));
  const g = new SeededGenerator(1);
  for (let i = 0; i < 1000; i++) {
    const r = g.below(3);
    if (r < 0 || r > 2) t.fail(`below(3) gave ${r}`);
  }
  t.equal(injectionDraw(42, 7), specMix32((specMix32((42 ^ 0x696e6a31) >>> 0) ^ 7) >>> 0), 'injection draw of §7.12');
});

t.test('quotas: largest remainder, ties to the lower index, exact total', async (t) => {
  t.same(quotas(80, [1, 3]), [20, 60]);
  t.same(quotas(10, [1, 1, 1]), [4, 3, 3], 'tie goes to the lower index');
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 5000 }), fc.array(fc.double({ min: 0.01, max: 100, noNaN: true }), { minLength: 1, maxLength: 8 }), (total, weights) => {
      const q = quotas(total, weights);
      const sum = weights.reduce((a, b) => a + b, 0);
      return q.reduce((a, b) => a + b, 0) === total && q.every((m, j) => Math.abs(m - (total * weights[j]!) / sum) < 1);
    }),
  );
});

t.test('shards: disjoint, equal counts, cover (pad) or drop the remainder; resume is a suffix', async (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 3 }),
      fc.integer({ min: 1, max: 5 }),
      fc.constantFrom<'pad' | 'drop'>('pad', 'drop'),
      fc.integer({ min: 0, max: 0xffffffff }),
      (sizes, world, remainder, seed) => {
        if (remainder === 'drop' && sizes.some((n) => n < world)) return true;
        const plans = Array.from({ length: world }, (_, rank) => new SessionPlan(sizes.map((samples) => ({ samples })), { rank, world, seed, shuffle: true, remainder }));
        const M = plans[0]!.samplesPerEpoch;
        if (!plans.every((p) => p.samplesPerEpoch === M)) return false;
        for (let epoch = 0; epoch < 2; epoch++) {
          const perRank = plans.map((p) => [...p.iterate({ epoch, position: 0 }, epoch + 1)]);
          if (!perRank.every((list) => list.length === M)) return false;
          for (let j = 0; j < sizes.length; j++) {
            const all = perRank.flatMap((list) => list.filter((s) => s.source === j).map((s) => s.sample));
            const distinct = new Set(all);
            if (remainder === 'pad' && distinct.size !== sizes[j]) return false;
            if (remainder === 'drop' && (distinct.size !== all.length || all.length !== sizes[j]! - (sizes[j]! % world))) return false;
            if (remainder === 'pad' && all.length - distinct.size !== all.length - sizes[j]!) return false;
          }
        }
        const full = [...plans[0]!.iterate({ epoch: 0, position: 0 }, 2)];
        const cut = Math.floor(full.length / 3);
        const resumed = [...plans[0]!.iterate({ epoch: full[cut]!.epoch, position: full[cut]!.position }, 2)];
        return JSON.stringify(resumed) === JSON.stringify(full.slice(cut));
      },
    ),
    { numRuns: 200 },
  );
  t.pass('properties held');
});

t.test('weighted interleave: exact quotas per epoch, evenly spread, the same on every call', async (t) => {
  const plan = new SessionPlan([{ samples: 10, weight: 2 }, { samples: 30, weight: 1 }, { samples: 5, weight: 1 }], { rank: 0, world: 1, seed: 3, shuffle: true, remainder: 'pad' });
  t.equal(plan.samplesPerEpoch, 45);
  t.same(plan.quotas, [23, 11, 11]);
  const schedule = plan.schedule();
  t.same([0, 1, 2].map((j) => schedule.filter((s) => s === j).length), [23, 11, 11]);
  const prefix = (j: number, n: number) => schedule.subarray(0, n).filter((s) => s === j).length;
  for (let n = 1; n <= 45; n++) for (let j = 0; j < 3; j++) if (Math.abs(prefix(j, n) - (n * plan.quotas[j]!) / 45) >= 2) t.fail(`source ${j} drifts at ${n}`);
  const epochs = [...plan.iterate({ epoch: 0, position: 0 }, 3)];
  // Source 2 (5 samples, quota 11) repeats: its stream walks passes 0, 1, 2 … each a permutation.
  const s2 = epochs.filter((s) => s.source === 2).map((s) => s.sample);
  t.same(new Set(s2.slice(0, 5)).size, 5, 'a pass is a permutation');
  t.same([...new SessionPlan([{ samples: 10, weight: 2 }, { samples: 30, weight: 1 }, { samples: 5, weight: 1 }], { rank: 0, world: 1, seed: 3, shuffle: true, remainder: 'pad' }).iterate({ epoch: 0, position: 0 }, 3)], epochs, 'deterministic');
  t.throws(() => new SessionPlan([{ samples: 1, weight: 1 }, { samples: 10, weight: 1 }], { rank: 1, world: 2, seed: 0, shuffle: true, remainder: 'drop' }), /no samples for rank 1/);
});
