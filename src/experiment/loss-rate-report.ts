/**
 * Writes a loss-rate experiment's report folder: `REPORT.md` (command, setup, table, computed
 * conclusion, drop accounting), `loss-vs-step.svg`, `eval-loss-vs-rate.svg` and `runs.json` (the raw
 * `ExperimentResult`, from which all of the rest can be re-rendered).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ALPHA, type Analysis, type RateSummary, analyze } from './loss-rate-analysis.js';
import type { ExperimentResult, RunRecord, StepPoint } from './loss-rate-result.js';
import { summarize } from './statistics.js';
import { type LineSeries, errorBarChart, lineChart } from './svg-plot.js';

export const REPORT_FILES = {
  report: 'REPORT.md',
  raw: 'runs.json',
  lossCurves: 'loss-vs-step.svg',
  evalVsRate: 'eval-loss-vs-rate.svg',
} as const;

const pct = (rate: number): string => `${Number((rate * 100).toPrecision(6))}%`;

function meanStd(s: { n: number; mean: number; std: number }, digits = 4): string {
  if (s.n === 0) return '—';
  return Number.isNaN(s.std) ? s.mean.toFixed(digits) : `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}`;
}

/** Mean (and std) over seeds of a curve, step by step, over the steps every run of the rate has. */
export function meanCurve(curves: readonly (readonly StepPoint[])[]): { step: number[]; mean: number[]; std: number[] } {
  const byStep = new Map<number, number[]>();
  for (const curve of curves) for (const p of curve) if (Number.isFinite(p.loss)) byStep.set(p.step, [...(byStep.get(p.step) ?? []), p.loss]);
  const steps = [...byStep.keys()].filter((s) => byStep.get(s)!.length === curves.length).sort((a, b) => a - b);
  const sums = steps.map((s) => summarize(byStep.get(s)!));
  return { step: steps, mean: sums.map((s) => s.mean), std: sums.map((s) => s.std) };
}

/** Moving average over `window` points, so a per-batch training loss curve is readable. */
export function smooth(values: readonly number[], window: number): number[] {
  return values.map((_, i) => {
    const from = Math.max(0, i - window + 1);
    const slice = values.slice(from, i + 1);
    return slice.reduce((a, b) => a + b, 0) / slice.length;
  });
}

export function lossCurvesSvg(result: ExperimentResult): string {
  const series: LineSeries[] = [];
  const window = Math.max(1, Math.round(result.parameters.steps / 20));
  result.parameters.rates.forEach((rate, colorIndex) => {
    const runs = result.runs.filter((r) => r.ok && r.rate === rate);
    if (runs.length === 0) return;
    const train = meanCurve(runs.map((r) => r.trainCurve));
    series.push({ label: `train ${pct(rate)}`, x: train.step, y: smooth(train.mean, window), colorIndex });
    const evals = meanCurve(runs.map((r) => r.evalCurve));
    if (evals.step.length === 0) return;
    const lower = evals.mean.map((m, i) => (Number.isNaN(evals.std[i]!) ? m : m - evals.std[i]!));
    const upper = evals.mean.map((m, i) => (Number.isNaN(evals.std[i]!) ? m : m + evals.std[i]!));
    series.push({ label: `eval ${pct(rate)}`, x: evals.step, y: evals.mean, lower, upper, colorIndex, dashed: true });
  });
  return lineChart(
    {
      title: `Loss vs step, mean over seeds (train: solid, moving average of ${window}; held-out eval: dashed, band ± std)`,
      xLabel: 'optimizer step',
      yLabel: 'cross-entropy loss (nats/token)',
      width: 860,
    },
    series,
  );
}

export function evalVsRateSvg(analysis: Analysis): string {
  return errorBarChart(
    { title: 'Held-out eval loss after the last step vs loss rate (mean ± std over seeds)', xLabel: 'loss rate', yLabel: 'eval loss (nats/token)', xFormat: pct },
    'eval loss',
    analysis.rates.filter((r) => r.evalLoss.n > 0).map((r) => ({ x: r.rate, y: r.evalLoss.mean, error: r.evalLoss.std })),
  );
}

function accountingColumns(rates: readonly RateSummary[]): string[] {
  const keys = new Set<string>();
  for (const r of rates) for (const [k, v] of Object.entries(r.accounting)) if (v !== 0 && /dropped|missing|lost/.test(k)) keys.add(k);
  return [...keys].sort();
}

function table(analysis: Analysis): string {
  const cmp = new Map(analysis.comparisons.filter((c) => c.metric === 'finalEvalLoss').map((c) => [c.rate, c]));
  const lines = [
    '| rate | runs | held-out eval loss | Δ eval vs 0%, paired [95% CI] | Holm p | Welch p | final train loss | train tokens/s | samples delivered | injected: seen / dropped / corrupted | realized rate |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of analysis.rates) {
    const c = cmp.get(r.rate);
    const delta =
      c?.test === undefined ? (r.rate === 0 ? 'baseline' : 'n/a') : `${c.test.difference >= 0 ? '+' : ''}${c.test.difference.toFixed(4)} [${c.test.ci[0].toFixed(4)}, ${c.test.ci[1].toFixed(4)}]`;
    const p = c === undefined || c.test === undefined ? '' : `${c.adjustedP.toPrecision(3)}${c.better || c.worse ? ' *' : ''}`;
    const welch = c?.welch === undefined ? '' : c.welch.pValue.toPrecision(3);
    const injected = r.injected.seen > 0 || r.injected.dropped > 0 || r.injected.corrupted > 0 ? `${r.injected.seen} / ${r.injected.dropped} / ${r.injected.corrupted}` : '0';
    lines.push(
      `| ${pct(r.rate)} | ${r.runs}${r.failed > 0 ? ` (+${r.failed} failed)` : ''} | ${meanStd(r.evalLoss)} | ${delta} | ${p} | ${welch} | ${meanStd(r.trainLoss)} | ${meanStd(r.tokensPerSecond, 0)} | ${meanStd(r.delivered, 0)} | ${injected} | ${Number.isNaN(r.realizedRate) ? '—' : pct(Number(r.realizedRate.toFixed(6)))} |`,
    );
  }
  return lines.join('\n');
}

function accountingTable(analysis: Analysis): string {
  const columns = accountingColumns(analysis.rates);
  if (columns.length === 0) return 'The clients reported no drops of any kind.';
  return [
    `| rate | ${columns.join(' | ')} |`,
    `| ---: | ${columns.map(() => '---:').join(' | ')} |`,
    ...analysis.rates.map((r) => `| ${pct(r.rate)} | ${columns.map((k) => String(r.accounting[k] ?? 0)).join(' | ')} |`),
  ].join('\n');
}

function runsTable(runs: readonly RunRecord[]): string {
  return [
    '| rate | seed | model seed | loss seed | steps | final eval | final train | tokens/s | wall s | status |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...runs.map(
      (r) =>
        `| ${pct(r.rate)} | ${r.seedIndex} | ${r.modelSeed} | ${r.lossSeed} | ${r.steps} | ${r.finalEvalLoss.toFixed(4)} | ${r.finalTrainLoss.toFixed(4)} | ${r.tokensPerSecond.toFixed(0)} | ${r.wallSeconds.toFixed(1)} | ${r.ok ? 'ok' : `failed: ${(r.error ?? '').split('\n')[0]?.slice(0, 120) ?? ''}`} |`,
    ),
  ].join('\n');
}

function whereText(p: ExperimentResult['parameters']): string {
  if (p.where === 'client') return "the client's CRC-Drop augmentation (`ndp pull --crc-drop P --crc-drop-seed S`, the seed's `crc_drop_rate`): a seeded fraction P of good data frames is treated as if its CRC had failed";
  if (p.where === 'server') {
    return p.fault === 'corrupt'
      ? "the server's fault injector (`ndp serve --inject-corrupt P`): a seeded fraction P of data frames is sent with one bit flipped, so the client drops it on its CRC"
      : "the server's fault injector (`ndp serve --inject-drop P`): a seeded fraction P of data frames is not sent";
  }
  return p.fault === 'corrupt'
    ? 'nftables on a veth pair between two network namespaces (`numgen random mod 10000 < P·10000`, then `@th,112,8 set 0xff` on SEGMENT datagrams from the server): a fraction P of data frames arrives with a broken CRC'
    : 'nftables on a veth pair between two network namespaces (`numgen random mod 10000 < P·10000 drop` on SEGMENT datagrams from the server): a fraction P of data frames is lost on the wire';
}

function orderCheck(analysis: Analysis): string {
  const checked = analysis.rates.reduce((s, r) => s + r.orderChecked, 0);
  const mismatches = analysis.rates.reduce((s, r) => s + r.orderMismatches, 0);
  if (checked === 0) return 'no deliveries recorded';
  return mismatches === 0
    ? `all ${checked} deliveries of all runs sat at the stream position that held the same dataset sample in every other run`
    : `${mismatches} of ${checked} deliveries sat at a stream position that held another sample in another run: the runs did NOT share one order`;
}

export function renderReport(result: ExperimentResult, analysis: Analysis = analyze(result)): string {
  const p = result.parameters;
  return `# Loss-rate experiment: does dropping data frames lower the loss?

Made by:

\`\`\`sh
${result.command}
\`\`\`

${result.startedAt} → ${result.finishedAt} on ${result.host.cpus} × ${result.host.cpuModel}, Node.js ${result.host.node} (${result.host.platform}).

## Claim under test
The qubgpu seed reports that dropping 5% of packets "with corrupted CRC" during training acts like dropout
and lowers the loss (0.6123 vs 0.6627 after 200 steps, one run each, no spread reported). Here each
loss rate is run with ${p.seeds} seed${p.seeds === 1 ? '' : 's'} and compared with 0% against the seed-to-seed noise.

## Conclusion (computed)
**${analysis.conclusion}**

${analysis.powerNote}
${analysis.trainNote === '' ? '' : `\n${analysis.trainNote}\n`}
## Results
Mean ± sample std over seeds. Held-out eval loss: mean cross-entropy on the eval split (never trained on)
after step ${p.steps}. Final train loss: mean training loss over the last ${Math.max(1, Math.ceil(p.steps / 10))} steps.
Δ: mean over seeds of (eval loss at that rate − eval loss at 0% with the same seed), with its 95%
confidence interval; Holm p: two-sided paired t-test p-value, Holm-adjusted over the rates compared
(\`*\` = below α = ${ALPHA}); Welch p: the unpaired Welch test, unadjusted, as a cross-check. Train
tokens/s: \`ndp train\`'s own figure (training only; the stream is a separate stage); on a shared
machine it follows the machine's load at the time of each run, not the loss rate. Injected counts are
the injector's own exact counters, summed over seeds; realized rate = (dropped + corrupted) / seen.

${table(analysis)}

![loss vs step](${REPORT_FILES.lossCurves})

![eval loss vs rate](${REPORT_FILES.evalVsRate})

### Drop accounting (client side, \`ndp pull --stats\`, summed over seeds)
${accountingTable(analysis)}

### Every run
${runsTable(result.runs)}

## Setup
- Loss injected by ${whereText(p)}.
- Each run is two stages of the product's own commands: \`ndp serve\` + \`ndp pull\` stream the data
  over UDP on loopback${p.where === 'network' ? ' (here: across the namespace lab\'s veth pair)' : ''} and record exactly the samples that
  survived, in arrival order, with the client's accounting; then \`ndp train --data\` trains on them in
  that order and evaluates on the held-out split (never streamed, never trained on).
- Every run sees the same stream: a fresh server on the same files and the same session parameters
  (shuffle seed ${p.dataSeed}, cursor 0, one rank, ${p.pullEpochs} epoch${p.pullEpochs === 1 ? '' : 's'}). Checked: ${orderCheck(analysis)}.
- What "seed" varies: seed index i gives model seed ${p.seedBase} + i (the base weights and the LoRA
  initialisation) and loss seed ${p.seedBase} + i (which frames the injector hits). The data order does not vary.
- ${p.loss === 'lossy'
    ? 'The session is `lossy`: a frame hit by the injector is never resent, so its sample is dropped whole, as the seed\'s augmentation did. With a fixed number of steps, runs with loss read further into the stream to fill their batches.'
    : 'The session is `repair`: every frame hit by the injector is NACKed and resent, so the loss never reaches the training data; this measures what repair costs, not augmentation.'}
- Model \`${p.model}\`, ${p.steps} steps, held-out eval (${p.evalBatches} batches) before the first step and every ${p.evalEvery} steps${p.trainArgs.length > 0 ? `, extra trainer arguments \`${p.trainArgs.join(' ')}\`` : ''}; ${p.parallel} run${p.parallel === 1 ? '' : 's'} at a time.
- Raw data: [\`${REPORT_FILES.raw}\`](${REPORT_FILES.raw}) (every run, every step, the exact commands).
`;
}

/** Reads a `runs.json`; the nulls JSON made of NaN (a failed run's losses) become NaN again. */
export async function readExperimentResult(path: string): Promise<ExperimentResult> {
  return JSON.parse(await readFile(path, 'utf8'), (_key, value: unknown) => (value === null ? Number.NaN : value)) as ExperimentResult;
}

/** Writes the whole report folder (created if missing); returns the paths written. */
export async function writeReport(dir: string, result: ExperimentResult): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const analysis = analyze(result);
  const files: Array<[string, string]> = [
    [REPORT_FILES.raw, JSON.stringify(result, null, 2) + '\n'],
    [REPORT_FILES.lossCurves, lossCurvesSvg(result)],
    [REPORT_FILES.evalVsRate, evalVsRateSvg(analysis)],
    [REPORT_FILES.report, renderReport(result, analysis)],
  ];
  const written: string[] = [];
  for (const [name, text] of files) {
    const path = join(dir, name);
    await writeFile(path, text);
    written.push(path);
  }
  return written;
}
