/**
 * Statistics against known values (computed with SciPy 1.17: scipy.stats.ttest_ind(equal_var=False),
 * scipy.stats.t, scipy.special.betainc / gammaln) and closed forms.
 */
import t from 'tap';
import {
  holmAdjust,
  pairedTTest,
  logGamma,
  regularizedBeta,
  studentTCdf,
  studentTQuantile,
  summarize,
  welchTTest,
} from '../../src/experiment/statistics.js';

/** [pass, message] for |actual − expected| ≤ tolerance, naming both numbers. */
function near(actual: number, expected: number, tolerance: number, what: string): [boolean, string] {
  return [Math.abs(actual - expected) <= tolerance, `${what}: ${actual} ≈ ${expected}`];
}

t.test('summarize: mean and sample std (n − 1)', async (t) => {
  const s = summarize([2, 4, 4, 4, 5, 5, 7, 9]);
  t.equal(s.mean, 5);
  t.ok(...near(s.std, Math.sqrt(32 / 7), 1e-12, 'std'));
  t.equal(s.min, 2);
  t.equal(s.max, 9);
  t.ok(Number.isNaN(summarize([3]).std), 'one value has no spread estimate');
  t.ok(Number.isNaN(summarize([]).mean));
});

t.test('logGamma and the incomplete beta', async (t) => {
  t.ok(...near(logGamma(0.5), 0.5723649429247, 1e-12, 'lnΓ(0.5)'));
  t.ok(...near(logGamma(10), 12.801827480081469, 1e-12, 'lnΓ(10) = ln 9!'));
  t.ok(...near(logGamma(3.7), 1.428072326665388, 1e-12, 'lnΓ(3.7)'));
  t.ok(...near(regularizedBeta(0.3, 2.5, 0.5), 0.018927124071945658, 1e-12, 'I_0.3(2.5, 0.5)'));
  t.ok(...near(regularizedBeta(0.42, 1, 1), 0.42, 1e-12, 'I_x(1,1) = x'));
  t.equal(regularizedBeta(0, 2, 3), 0);
  t.equal(regularizedBeta(1, 2, 3), 1);
});

t.test("Student's t: CDF and quantile", async (t) => {
  t.ok(...near(studentTCdf(1, 1), 0.75, 1e-12, 'Cauchy: P(T ≤ 1) = 3/4'));
  // df = 2 has the closed form 1/2 + t / (2 √(2 + t²)).
  for (const x of [-3, -0.5, 0, 0.7, 4]) t.ok(...near(studentTCdf(x, 2), 0.5 + x / (2 * Math.sqrt(2 + x * x)), 1e-12, `df 2, t ${x}`));
  t.ok(...near(studentTCdf(1.5, 3), 0.8847080673775886, 1e-10, 'df 3'));
  t.ok(...near(studentTCdf(-2.2, 7.5), 0.03059973295305805, 1e-10, 'fractional df'));
  t.ok(...near(studentTQuantile(0.975, 1), 12.706204736174694, 1e-8, 't(0.975, 1)'));
  t.ok(...near(studentTQuantile(0.975, 2), 4.302652729749462, 1e-9, 't(0.975, 2)'));
  t.ok(...near(studentTQuantile(0.975, 4.3), 2.70169489828223, 1e-9, 't(0.975, 4.3)'));
  t.equal(studentTQuantile(0.5, 5), 0);
  t.ok(Number.isNaN(studentTQuantile(1, 5)));
  t.ok(Number.isNaN(studentTCdf(1, 0)));
});

t.test("Welch's t-test matches SciPy", async (t) => {
  // The seed's kind of claim, with 3 seeds: a 0.043 lower loss that is only borderline.
  const r = welchTTest([0.61, 0.64, 0.6], [0.66, 0.67, 0.65]);
  if (r === undefined) throw new Error('no result');
  t.ok(...near(r.difference, 0.6166666666666667 - 0.66, 1e-12, 'difference'));
  t.ok(...near(r.t, -3.25, 1e-9, 't'));
  t.ok(...near(r.df, 2.876404494382023, 1e-9, 'df'));
  t.ok(...near(r.pValue, 0.05041211851105171, 1e-9, 'p'));
  t.ok(...near(r.ci[0], -0.0868162990141566, 1e-8, 'ci low'));
  t.ok(...near(r.ci[1], 0.00014963234748993637, 1e-8, 'ci high'));
  const a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4];
  const b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4];
  const r2 = welchTTest(a, b);
  if (r2 === undefined) throw new Error('no result');
  t.ok(...near(r2.t, -2.455356398286006, 1e-9, 't'));
  t.ok(...near(r2.df, 24.988529290231416, 1e-8, 'df'));
  t.ok(...near(r2.pValue, 0.021378001462866992, 1e-9, 'p'));
  t.ok(...near(r2.ci[0], -3.984096267140929, 1e-7, 'ci low'));
});

t.test('Welch: cases with no answer', async (t) => {
  t.equal(welchTTest([1], [1, 2]), undefined, 'one seed: no variance estimate');
  t.equal(welchTTest([1, 1], [2, 2]), undefined, 'no spread at all');
  const oneSided = welchTTest([1, 1, 1], [2, 2.1, 1.9]);
  t.ok(oneSided !== undefined && oneSided.pValue < 0.01, 'spread in one group is enough');
});

t.test('paired t-test matches SciPy (ttest_rel)', async (t) => {
  const r = pairedTTest([11.8, 11.75, 11.9], [11.83, 11.79, 11.91]);
  if (r === undefined) throw new Error('no result');
  t.ok(...near(r.difference, -0.0266666666666667, 1e-9, 'mean difference'));
  t.ok(...near(r.t, -3.0237157840738176, 1e-6, 't'));
  t.equal(r.df, 2);
  t.ok(...near(r.pValue, 0.09417837268432341, 1e-7, 'p'));
  t.ok(...near(r.ci[0], -0.06461249700263288, 1e-8, 'ci low'));
  t.ok(...near(r.ci[1], 0.01127916366930069, 1e-8, 'ci high'));
  const r2 = pairedTTest([2.1, 2.5, 2.3, 2.8, 2.2], [2.0, 2.6, 2.1, 2.5, 2.2]);
  t.ok(...near(r2!.pValue, 0.23019964108049906, 1e-9, 'p, 5 pairs'));
  t.ok(...near(r2!.ci[1], 0.2963243161477555, 1e-8, 'ci high, 5 pairs'));
  t.equal(pairedTTest([1, 2], [1]), undefined, 'unequal lengths');
  t.equal(pairedTTest([1], [2]), undefined, 'one pair');
  t.equal(pairedTTest([1, 2, 3], [2, 3, 4]), undefined, 'constant difference: no spread');
});

t.test('Holm adjustment', async (t) => {
  t.same(holmAdjust([0.04, 0.03, 0.01, 0.2]).map((p) => Number(p.toFixed(12))), [0.09, 0.09, 0.04, 0.2]);
  t.same(holmAdjust([0.6, 0.5]), [1, 1], 'capped at 1');
  t.same(holmAdjust([]), []);
});
