/**
 * The computed verdict of a loss-rate experiment: per rate, mean ± std over seeds; per non-zero rate,
 * a two-sided paired t-test against the 0% baseline, Holm-adjusted over all rates compared; and a
 * conclusion sentence that follows from those numbers only.
 *
 * Why paired: runs with the same seed index share the model initialisation and the data stream and
 * differ only in the loss, so comparing them seed by seed cancels the (large) variance between
 * initialisations. Welch's unpaired test is reported alongside as a cross-check.
 */
import type { ExperimentResult, RunRecord } from './loss-rate-result.js';
import { type Summary, type TTestResult, holmAdjust, pairedTTest, summarize, welchTTest } from './statistics.js';

/** Family-wise significance level of the conclusion. */
export const ALPHA = 0.05;

export type Metric = 'finalEvalLoss' | 'finalTrainLoss';
export const METRIC_NAMES: Readonly<Record<Metric, string>> = {
  finalEvalLoss: 'held-out eval loss',
  finalTrainLoss: 'final train loss',
};

export interface RateSummary {
  readonly rate: number;
  /** Runs that finished. */
  readonly runs: number;
  readonly failed: number;
  readonly evalLoss: Summary;
  readonly trainLoss: Summary;
  readonly tokensPerSecond: Summary;
  /** Mean over runs of the fraction of data frames the injector dropped or corrupted (NaN without counts). */
  readonly realizedRate: number;
  /** Sums over runs of the trainer's accounting (dotted keys). */
  readonly accounting: Readonly<Record<string, number>>;
  readonly injected: { readonly seen: number; readonly dropped: number; readonly corrupted: number };
  /** Samples the stream delivered to training, over seeds. */
  readonly delivered: Summary;
  /** Deliveries at a stream position that held another sample in another run (0 = one shared order), and deliveries checked. */
  readonly orderMismatches: number;
  readonly orderChecked: number;
}

export interface Comparison {
  readonly rate: number;
  readonly metric: Metric;
  /** The paired t-test over seed indices; undefined when it cannot be computed (fewer than 2 pairs, or no spread). */
  readonly test: TTestResult | undefined;
  /** Welch's unpaired t-test, the cross-check. */
  readonly welch: TTestResult | undefined;
  /** Seed indices with a finished run at both this rate and 0%. */
  readonly pairs: number;
  /** Holm-adjusted p-value of the paired test over the rates compared for this metric. */
  readonly adjustedP: number;
  /** Lower loss than 0% with adjusted p < ALPHA. */
  readonly better: boolean;
  /** Higher loss than 0% with adjusted p < ALPHA. */
  readonly worse: boolean;
}

export interface Analysis {
  readonly rates: readonly RateSummary[];
  readonly comparisons: readonly Comparison[];
  /** The conclusion for the primary metric (held-out eval loss), in words. */
  readonly conclusion: string;
  /** A note on statistical power with this many seeds. */
  readonly powerNote: string;
  /** The same test on the final train loss (secondary: the train loss is measured on each run's own, differently thinned data). */
  readonly trainNote: string;
  readonly baselinePresent: boolean;
}

function sumRecords(records: readonly Readonly<Record<string, number>>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records) for (const [k, v] of Object.entries(r)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function summarizeRate(rate: number, runs: readonly RunRecord[]): RateSummary {
  const ok = runs.filter((r) => r.ok);
  const realized = ok
    .map((r) => (r.injected?.seen !== undefined && r.injected.seen > 0 ? (r.injected.dropped + r.injected.corrupted) / r.injected.seen : Number.NaN))
    .filter((v) => Number.isFinite(v));
  return {
    rate,
    runs: ok.length,
    failed: runs.length - ok.length,
    evalLoss: summarize(ok.map((r) => r.finalEvalLoss).filter(Number.isFinite)),
    trainLoss: summarize(ok.map((r) => r.finalTrainLoss).filter(Number.isFinite)),
    tokensPerSecond: summarize(ok.map((r) => r.tokensPerSecond).filter(Number.isFinite)),
    realizedRate: realized.length === 0 ? Number.NaN : summarize(realized).mean,
    accounting: sumRecords(ok.map((r) => r.accounting)),
    injected: {
      seen: ok.reduce((s, r) => s + (r.injected?.seen ?? 0), 0),
      dropped: ok.reduce((s, r) => s + (r.injected?.dropped ?? 0), 0),
      corrupted: ok.reduce((s, r) => s + (r.injected?.corrupted ?? 0), 0),
    },
    delivered: summarize(ok.flatMap((r) => (r.delivery === undefined ? [] : [r.delivery.samples]))),
    orderMismatches: ok.reduce((s, r) => s + (r.delivery?.orderMismatches ?? 0), 0),
    orderChecked: ok.reduce((s, r) => s + (r.delivery?.orderChecked ?? 0), 0),
  };
}

function values(runs: readonly RunRecord[], rate: number, metric: Metric): number[] {
  return runs.filter((r) => r.ok && r.rate === rate).map((r) => r[metric]).filter(Number.isFinite);
}

/** The metric at `rate` and at 0% for every seed index where both runs finished. */
function pairs(runs: readonly RunRecord[], rate: number, metric: Metric): { at: number[]; baseline: number[] } {
  const value = (r: number, seed: number): number | undefined => {
    const run = runs.find((x) => x.ok && x.rate === r && x.seedIndex === seed);
    return run !== undefined && Number.isFinite(run[metric]) ? run[metric] : undefined;
  };
  const at: number[] = [];
  const baseline: number[] = [];
  for (const seed of new Set(runs.map((r) => r.seedIndex))) {
    const a = value(rate, seed);
    const b = value(0, seed);
    if (a === undefined || b === undefined) continue;
    at.push(a);
    baseline.push(b);
  }
  return { at, baseline };
}

function compare(result: ExperimentResult, metric: Metric): Comparison[] {
  const others = result.parameters.rates.filter((r) => r !== 0);
  const paired = others.map((rate) => pairs(result.runs, rate, metric));
  const tests = paired.map((p) => pairedTTest(p.at, p.baseline));
  // Untestable comparisons take p = 1 in the family: they can never be called significant.
  const adjusted = holmAdjust(tests.map((t) => t?.pValue ?? 1));
  return others.map((rate, i) => {
    const test = tests[i];
    const adjustedP = adjusted[i] ?? 1;
    const significant = test !== undefined && adjustedP < ALPHA;
    return {
      rate,
      metric,
      test,
      welch: welchTTest(values(result.runs, rate, metric), values(result.runs, 0, metric)),
      pairs: paired[i]!.at.length,
      adjustedP,
      better: significant && test.difference < 0,
      worse: significant && test.difference > 0,
    };
  });
}

const pct = (rate: number): string => `${Number((rate * 100).toPrecision(6))}%`;

export function analyze(result: ExperimentResult): Analysis {
  const rates = result.parameters.rates.map((rate) => summarizeRate(rate, result.runs.filter((r) => r.rate === rate)));
  const baselinePresent = result.parameters.rates.includes(0);
  const comparisons = baselinePresent ? [...compare(result, 'finalEvalLoss'), ...compare(result, 'finalTrainLoss')] : [];
  const evalComparisons = comparisons.filter((c) => c.metric === 'finalEvalLoss');
  const seeds = Math.min(...rates.map((r) => r.runs));
  const testTable = (c: Comparison): string =>
    c.test === undefined ? `${pct(c.rate)}: not testable` : `${pct(c.rate)}: Δ = ${c.test.difference.toFixed(4)}, Holm-adjusted p = ${c.adjustedP.toPrecision(3)}`;
  let conclusion: string;
  if (!baselinePresent) {
    conclusion = 'No 0% baseline among the rates: nothing to compare against, so no conclusion is drawn.';
  } else if (evalComparisons.length === 0) {
    conclusion = 'Only the 0% baseline was run: nothing to compare.';
  } else if (evalComparisons.every((c) => c.test === undefined)) {
    conclusion = `No test possible: a comparison needs at least 2 seeds finished at both the rate and 0%, with some spread in their differences (here ${seeds} seed${seeds === 1 ? '' : 's'}). No claim either way.`;
  } else {
    const better = evalComparisons.filter((c) => c.better);
    const worse = evalComparisons.filter((c) => c.worse);
    const verdict =
      better.length > 0
        ? `Yes: ${better.map((c) => pct(c.rate)).join(', ')} gave a lower held-out eval loss than 0% beyond seed-to-seed noise.`
        : 'No: no loss rate gave a lower held-out eval loss than 0% beyond seed-to-seed noise.';
    const harm = worse.length > 0 ? ` ${worse.map((c) => pct(c.rate)).join(', ')} gave a significantly higher eval loss than 0%.` : '';
    conclusion =
      `${verdict}${harm} (paired t-test over seeds, two-sided, each rate vs 0%, Holm-adjusted over ` +
      `${evalComparisons.length} comparison${evalComparisons.length === 1 ? '' : 's'}, α = ${ALPHA}; ${evalComparisons.map(testTable).join('; ')}.)`;
  }
  const widths = evalComparisons.filter((c) => c.test !== undefined).map((c) => (c.test!.ci[1] - c.test!.ci[0]) / 2);
  const resolution = widths.length > 0 ? Math.max(...widths) : Number.NaN;
  const powerNote =
    seeds < 2
      ? 'With fewer than 2 seeds per rate there is no estimate of seed-to-seed noise at all.'
      : `With ${seeds} seed${seeds === 1 ? '' : 's'} per rate the test has low power: ` +
        (Number.isFinite(resolution)
          ? `the 95% confidence intervals of the differences are up to ±${resolution.toFixed(4)} wide, so smaller real effects cannot be told from noise, and "no significant difference" is not evidence of no effect.`
          : 'there is no spread estimate to size the effects it could detect.');
  const trainComparisons = comparisons.filter((c) => c.metric === 'finalTrainLoss' && c.test !== undefined);
  const trainNote =
    trainComparisons.length === 0
      ? ''
      : `Final train loss, same test: ${trainComparisons
          .map((c) => `${testTable(c)}${c.better ? ' (lower)' : c.worse ? ' (higher)' : ''}`)
          .join('; ')}. The train loss is measured on each run's own batches, which loss thins differently, so it is secondary to the held-out loss.`;
  return { rates, comparisons, conclusion, powerNote, trainNote, baselinePresent };
}
