/**
 * The statistics a loss-rate report needs, with no dependency: summaries over seeds, Welch's
 * unequal-variance t-test with its confidence interval, and Holm's correction for comparing several
 * rates against one baseline. Student's t distribution comes from the regularized incomplete beta
 * function (continued fraction, evaluated with the modified Lentz method).
 */

/** Mean, sample standard deviation (n − 1 denominator) and count of a list of numbers. */
export interface Summary {
  readonly n: number;
  readonly mean: number;
  /** Sample standard deviation; NaN when n < 2. */
  readonly std: number;
  readonly min: number;
  readonly max: number;
}

export function summarize(values: readonly number[]): Summary {
  const n = values.length;
  if (n === 0) return { n, mean: Number.NaN, std: Number.NaN, min: Number.NaN, max: Number.NaN };
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const std = n < 2 ? Number.NaN : Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1));
  return { n, mean, std, min: Math.min(...values), max: Math.max(...values) };
}

/** ln Γ(x) for x > 0, Lanczos approximation (g = 7, 9 coefficients; ~15 significant digits). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const g = 7;
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  const z = x - 1;
  let sum = c[0]!;
  for (let i = 1; i < c.length; i++) sum += c[i]! / (z + i);
  const t = z + g + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** Continued fraction of I_x(a, b) (valid for x < (a + 1) / (a + b + 2)), modified Lentz. */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  const clampTiny = (v: number): number => (Math.abs(v) < tiny ? tiny : v);
  let c = 1;
  let d = 1 / clampTiny(1 - ((a + b) * x) / (a + 1));
  let result = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    const even = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 / clampTiny(1 + even * d);
    c = clampTiny(1 + even / c);
    result *= d * c;
    const odd = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 / clampTiny(1 + odd * d);
    c = clampTiny(1 + odd / c);
    const delta = d * c;
    result *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return result;
}

/** The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 ≤ x ≤ 1. */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  // The fraction converges fast only on one side of the mean; use the symmetry I_x(a,b) = 1 − I_{1−x}(b,a).
  if (x < (a + 1) / (a + b + 2)) return (front * betaContinuedFraction(a, b, x)) / a;
  return 1 - (front * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** P(T ≤ t) for Student's t distribution with `df` degrees of freedom (df may be fractional, as Welch's is). */
export function studentTCdf(t: number, df: number): number {
  if (Number.isNaN(t) || !(df > 0)) return Number.NaN;
  if (t === Number.POSITIVE_INFINITY) return 1;
  if (t === Number.NEGATIVE_INFINITY) return 0;
  const tail = 0.5 * regularizedBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/** The t with P(T ≤ t) = p (bisection on the CDF: robust, and fast enough for a report). */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1) || !(df > 0)) return Number.NaN;
  if (p === 0.5) return 0;
  let lo = -1;
  let hi = 1;
  while (studentTCdf(lo, df) > p) lo *= 2;
  while (studentTCdf(hi, df) < p) hi *= 2;
  for (let i = 0; i < 200 && hi - lo > 1e-12 * Math.max(1, Math.abs(hi)); i++) {
    const mid = (lo + hi) / 2;
    if (studentTCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** A two-sample t-test of mean(a) − mean(b) (Welch's, or paired). */
export interface TTestResult {
  /** mean(a) − mean(b). */
  readonly difference: number;
  readonly t: number;
  /** Degrees of freedom (Welch–Satterthwaite for Welch's test, n − 1 for the paired test). */
  readonly df: number;
  /** Two-sided p-value. */
  readonly pValue: number;
  /** Confidence interval of the difference at `level`. */
  readonly ci: readonly [number, number];
  readonly level: number;
}

/**
 * Welch's unequal-variance t-test of the difference of means, two-sided, with its confidence
 * interval. Returns undefined when it cannot be computed: fewer than 2 values in a group, or both
 * groups without any spread (then no noise estimate exists).
 * @param level confidence level of the interval. Defaults to 0.95.
 */
export function welchTTest(a: readonly number[], b: readonly number[], level = 0.95): TTestResult | undefined {
  const sa = summarize(a);
  const sb = summarize(b);
  if (sa.n < 2 || sb.n < 2) return undefined;
  const va = (sa.std * sa.std) / sa.n;
  const vb = (sb.std * sb.std) / sb.n;
  const se = Math.sqrt(va + vb);
  if (se === 0) return undefined;
  const difference = sa.mean - sb.mean;
  const t = difference / se;
  const df = (va + vb) ** 2 / ((va * va) / (sa.n - 1) + (vb * vb) / (sb.n - 1));
  const pValue = Math.min(1, 2 * studentTCdf(-Math.abs(t), df));
  const half = studentTQuantile(1 - (1 - level) / 2, df) * se;
  return { difference, t, df, pValue, ci: [difference - half, difference + half], level };
}

/**
 * The paired t-test of mean(a − b), two-sided, with its confidence interval: `a[i]` and `b[i]` are
 * one pair (here: two loss rates trained from the same model seed on the same stream), so the
 * variance between pairs cancels. Returns undefined with fewer than 2 pairs, unequal lengths, or
 * differences without any spread.
 * @param level confidence level of the interval. Defaults to 0.95.
 */
export function pairedTTest(a: readonly number[], b: readonly number[], level = 0.95): TTestResult | undefined {
  if (a.length !== b.length) return undefined;
  const d = summarize(a.map((x, i) => x - b[i]!));
  if (d.n < 2) return undefined;
  const se = d.std / Math.sqrt(d.n);
  if (se === 0) return undefined;
  const t = d.mean / se;
  const df = d.n - 1;
  const pValue = Math.min(1, 2 * studentTCdf(-Math.abs(t), df));
  const half = studentTQuantile(1 - (1 - level) / 2, df) * se;
  return { difference: d.mean, t, df, pValue, ci: [d.mean - half, d.mean + half], level };
}

/**
 * Holm's step-down adjustment of p-values for several tests of one family (here: every rate against
 * the 0% baseline). Controls the family-wise error rate like Bonferroni, with more power. Returns the
 * adjusted p-values in the input order.
 */
export function holmAdjust(pValues: readonly number[]): number[] {
  const m = pValues.length;
  const order = pValues.map((p, i) => ({ p, i })).sort((x, y) => x.p - y.p);
  const adjusted = new Array<number>(m).fill(Number.NaN);
  let running = 0;
  order.forEach(({ p, i }, rank) => {
    running = Math.max(running, Math.min(1, (m - rank) * p));
    adjusted[i] = running;
  });
  return adjusted;
}
