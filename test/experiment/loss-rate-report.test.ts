/**
 * The report writer and the computed conclusion, on results built here with known properties (a rate
 * that clearly helps, rates that are noise, a missing baseline, one seed). The SVGs are checked for
 * XML well-formedness by a strict little checker, and for the numbers they must show.
 */
import t from 'tap';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyze } from '../../src/experiment/loss-rate-analysis.js';
import {
  REPORT_FILES,
  evalVsRateSvg,
  lossCurvesSvg,
  meanCurve,
  readExperimentResult,
  renderReport,
  smooth,
  writeReport,
} from '../../src/experiment/loss-rate-report.js';
import type { ExperimentResult, RunRecord } from '../../src/experiment/loss-rate-result.js';
import { escapeXml, niceTicks } from '../../src/experiment/svg-plot.js';

/**
 * Throws unless `xml` is well-formed: one root, every tag closed in order, attributes quoted, no raw
 * `<` or stray `&` in text or attribute values. Returns the element names in document order.
 */
function checkXml(xml: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  let i = 0;
  let roots = 0;
  const checkText = (text: string): void => {
    if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(text)) throw new Error(`bad entity in ${JSON.stringify(text.slice(0, 60))}`);
  };
  while (i < xml.length) {
    const open = xml.indexOf('<', i);
    if (open < 0) {
      checkText(xml.slice(i));
      break;
    }
    checkText(xml.slice(i, open));
    const close = xml.indexOf('>', open);
    if (close < 0) throw new Error('unterminated tag');
    const tag = xml.slice(open + 1, close);
    i = close + 1;
    if (tag.startsWith('?')) {
      if (!tag.endsWith('?') || names.length > 0) throw new Error('misplaced XML declaration');
      continue;
    }
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      if (stack.pop() !== name) throw new Error(`</${name}> closes the wrong element`);
      continue;
    }
    const selfClosing = tag.endsWith('/');
    const body = selfClosing ? tag.slice(0, -1) : tag;
    const m = /^([A-Za-z][\w:-]*)((?:\s+[A-Za-z][\w:-]*="[^"<]*")*)\s*$/.exec(body);
    if (m === null) throw new Error(`malformed tag <${tag.slice(0, 80)}>`);
    checkText(m[2] ?? '');
    if (stack.length === 0 && ++roots > 1) throw new Error('more than one root element');
    names.push(m[1]!);
    if (!selfClosing) stack.push(m[1]!);
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join('>, <')}>`);
  return names;
}

/** A deterministic pseudo-random sequence (the test must not depend on Math.random). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A result where each rate's final eval loss is `level(rate)` plus ±`noise` uniform jitter per seed. */
function result(rates: number[], seeds: number, level: (rate: number) => number, noise: number): ExperimentResult {
  const random = lcg(42);
  const runs: RunRecord[] = [];
  const steps = 20;
  for (const rate of rates) {
    for (let s = 0; s < seeds; s++) {
      const final = level(rate) + (random() * 2 - 1) * noise;
      const trainCurve = Array.from({ length: steps }, (_, i) => ({ step: i + 1, loss: final + 2 * (1 - (i + 1) / steps) + random() * 0.1 }));
      runs.push({
        rate,
        seedIndex: s,
        modelSeed: 1 + s,
        lossSeed: 1 + s,
        ok: true,
        trainCurve,
        evalCurve: [
          { step: 10, loss: final + 1 },
          { step: 20, loss: final },
        ],
        finalTrainLoss: final - 0.05,
        finalEvalLoss: final,
        tokensPerSecond: 1234 + s,
        steps,
        wallSeconds: 12.5,
        accounting: { 'frames.received': 1000, 'frames.dropped.augment': Math.round(rate * 1000), 'samples.dropped.augment': Math.round(rate * 100) },
        injected: { counter: 'client', seen: 1000, dropped: Math.round(rate * 1000), corrupted: 0 },
        commands: { trainer: ['ndp', 'train', '--crc-drop', String(rate)] },
      });
    }
  }
  return {
    experiment: 'loss-rate',
    command: `ndp experiment loss-rate --rates ${rates.join(',')} --seeds ${seeds} --steps ${steps}`,
    startedAt: '2026-11-26T08:00:00.000Z',
    finishedAt: '2026-11-26T08:10:00.000Z',
    host: { cpus: 2, cpuModel: 'test CPU <&>', node: 'v20.20.2', platform: 'linux' },
    parameters: { rates, seeds, steps, where: 'client', fault: 'corrupt', model: 'tiny', evalEvery: 10, loss: 'lossy', dataSeed: 1, evalBatches: 4, pullEpochs: 1, seedBase: 1, parallel: 1, trainArgs: [] },
    runs,
  };
}

t.test('the XML checker itself rejects what it must', async (t) => {
  t.throws(() => checkXml('<a><b></a></b>'));
  t.throws(() => checkXml('<a x=1/>'));
  t.throws(() => checkXml('<a>1 < 2</a>'));
  t.throws(() => checkXml('<a>R&D</a>'));
  t.throws(() => checkXml('<a/><b/>'));
  t.same(checkXml('<?xml version="1.0"?><a k="v &amp; w"><b/>x &lt; y</a>'), ['a', 'b']);
});

t.test('nice ticks cover the range in round steps', async (t) => {
  t.same(niceTicks(0, 0.2), [0, 0.05, 0.1, 0.15, 0.2]);
  t.same(niceTicks(2.31, 2.87), [2.2, 2.4, 2.6, 2.8, 3]);
  const flat = niceTicks(5, 5);
  t.ok(flat[0]! <= 5 && flat[flat.length - 1]! >= 5 && flat.length >= 2, 'a flat range still gets an axis');
  t.same(niceTicks(Number.NaN, 1), [0, 1]);
  t.equal(escapeXml(`a<b & "c" 'd'>`), 'a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;');
});

t.test('mean curves and smoothing', async (t) => {
  const m = meanCurve([
    [{ step: 1, loss: 1 }, { step: 2, loss: 3 }],
    [{ step: 1, loss: 3 }],
  ]);
  t.same(m.step, [1], 'only steps every run has');
  t.same(m.mean, [2]);
  t.same(smooth([1, 3, 5, 7], 2), [1, 2, 4, 6]);
});

t.test('a rate that clearly helps is found, with the test named', async (t) => {
  const r = result([0, 0.05, 0.2], 5, (rate) => (rate === 0.05 ? 2.0 : 2.5), 0.02);
  const a = analyze(r);
  t.match(a.conclusion, /^Yes: 5% gave a lower held-out eval loss than 0% beyond seed-to-seed noise\./);
  t.match(a.conclusion, /paired t-test over seeds, two-sided, each rate vs 0%, Holm-adjusted over 2 comparisons/);
  const c = a.comparisons.find((x) => x.metric === 'finalEvalLoss' && x.rate === 0.05);
  t.ok(c?.better && c.test !== undefined && c.test.difference < -0.4);
  t.notOk(a.comparisons.find((x) => x.metric === 'finalEvalLoss' && x.rate === 0.2)?.better, '20% is noise');
  t.equal(a.rates[1]!.realizedRate, 0.05, 'realized rate from the injector counts');
});

t.test('pairing by seed removes the spread between initialisations that Welch cannot', async (t) => {
  // Seeds differ a lot (offset 0.5 per seed index); within a seed, 5% is 0.02 lower, give or take 0.002.
  const r = result([0, 0.05], 4, () => 0, 0);
  const random = lcg(7);
  const runs = r.runs.map((run) => {
    const loss = run.seedIndex * 0.5 + (run.rate === 0.05 ? -0.02 : 0) + (random() - 0.5) * 0.004;
    return { ...run, finalEvalLoss: loss };
  });
  const a = analyze({ ...r, runs });
  const c = a.comparisons.find((x) => x.metric === 'finalEvalLoss' && x.rate === 0.05)!;
  t.ok(c.test !== undefined && c.test.pValue < 0.01, `paired p ${c.test?.pValue}`);
  t.ok(c.welch !== undefined && c.welch.pValue > 0.5, `Welch p ${c.welch?.pValue}`);
  t.ok(c.better);
  t.match(a.conclusion, /^Yes: 5%/);
});

t.test('a rate that hurts is named as such', async (t) => {
  const a = analyze(result([0, 0.2], 4, (rate) => 2 + rate * 5, 0.01));
  t.match(a.conclusion, /^No: no loss rate gave a lower held-out eval loss/);
  t.match(a.conclusion, /20% gave a significantly higher eval loss than 0%/);
});

t.test('noise alone gives no claim, and the power note says why', async (t) => {
  const a = analyze(result([0, 0.01, 0.05], 3, () => 2.5, 0.05));
  t.match(a.conclusion, /^No: no loss rate/);
  t.match(a.powerNote, /With 3 seeds per rate the test has low power: the 95% confidence intervals of the differences are up to ±\d/);
});

t.test('no baseline, or one seed: no test and no claim', async (t) => {
  t.match(analyze(result([0.05, 0.1], 3, () => 2, 0.1)).conclusion, /No 0% baseline/);
  const one = analyze(result([0, 0.05], 1, (rate) => 2 - rate, 0));
  t.match(one.conclusion, /No test possible/);
  t.match(one.powerNote, /fewer than 2 seeds/);
});

t.test('failed runs are left out of the statistics and shown in the report', async (t) => {
  const r = result([0, 0.05], 3, () => 2, 0.1);
  const runs = r.runs.map((run, i) => (i === 0 ? { ...run, ok: false, error: 'NDP_ERR_EXPERIMENT_RUN_FAILED: trainer exited 1', finalEvalLoss: Number.NaN } : run));
  const broken = { ...r, runs };
  const a = analyze(broken);
  t.equal(a.rates[0]!.runs, 2);
  t.equal(a.rates[0]!.failed, 1);
  t.equal(a.comparisons.find((c) => c.metric === 'finalEvalLoss' && c.rate === 0.05)?.pairs, 2, 'only seeds finished at both rates are paired');
  const md = renderReport(broken, a);
  t.match(md, /\| 0% \| 2 \(\+1 failed\) \|/);
  t.match(md, /failed: NDP_ERR_EXPERIMENT_RUN_FAILED: trainer exited 1/);
});

t.test('SVG plots are well-formed and show their data', async (t) => {
  const r = result([0, 0.05, 0.2], 3, (rate) => 2 + rate, 0.03);
  const a = analyze(r);
  const curves = lossCurvesSvg(r);
  const names = checkXml(curves);
  t.equal(names[0], 'svg');
  t.equal(names.filter((n) => n === 'polyline').length, 6, 'train and eval line for each of 3 rates');
  t.equal(names.filter((n) => n === 'polygon').length, 3, 'an eval ± std band per rate');
  for (const label of ['train 0%', 'eval 5%', 'eval 20%']) t.match(curves, label);
  const bars = evalVsRateSvg(a);
  const barNames = checkXml(bars);
  t.equal(barNames.filter((n) => n === 'circle').length, 3);
  for (const rate of a.rates) t.match(bars, `${rate.evalLoss.mean.toFixed(4)} ± ${rate.evalLoss.std.toFixed(4)}`, 'each mean ± std is in a tooltip');
  t.match(bars, />20%</, 'x ticks as percentages');
});

t.test('writeReport writes the folder; REPORT.md has command, table numbers and conclusion; runs.json round-trips', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ndp-report-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = result([0, 0.05], 3, (rate) => 2 + rate, 0.05);
  const out = join(dir, 'nested', 'report');
  const written = await writeReport(out, r);
  t.same((await readdir(out)).sort(), Object.values(REPORT_FILES).sort());
  t.equal(written.length, 4);
  const md = await readFile(join(out, REPORT_FILES.report), 'utf8');
  t.match(md, '```sh\nndp experiment loss-rate --rates 0,0.05 --seeds 3 --steps 20\n```', 'the exact command at the top');
  const a = analyze(r);
  for (const rate of a.rates) t.match(md, `${rate.evalLoss.mean.toFixed(4)} ± ${rate.evalLoss.std.toFixed(4)}`);
  t.match(md, a.conclusion);
  t.match(md, '| 3000 / 150 / 0 | 5% |', 'injected counts and the realized rate');
  t.match(md, 'frames.dropped.augment');
  t.match(md, `![loss vs step](${REPORT_FILES.lossCurves})`);
  t.same(JSON.parse(await readFile(join(out, REPORT_FILES.raw), 'utf8')), r);
  checkXml(await readFile(join(out, REPORT_FILES.lossCurves), 'utf8'));
  checkXml(await readFile(join(out, REPORT_FILES.evalVsRate), 'utf8'));
});

t.test('runs.json reads back for a re-render, NaN of failed runs included', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ndp-report-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = result([0, 0.05], 2, () => 2, 0.1);
  const failed = { ...r, runs: r.runs.map((run, i) => (i === 1 ? { ...run, ok: false, error: 'boom', finalEvalLoss: Number.NaN, tokensPerSecond: Number.NaN } : run)) };
  await writeReport(dir, failed);
  const back = await readExperimentResult(join(dir, REPORT_FILES.raw));
  t.ok(Number.isNaN(back.runs[1]!.finalEvalLoss), 'null in JSON is NaN again');
  t.equal(back.runs[1]!.error, 'boom');
  t.equal(renderReport(back), renderReport(failed), 'the same report from the raw data');
});
