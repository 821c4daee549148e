/**
 * The runner's pieces that need no server or trainer: option parsing and its limits, the server's
 * ready line, the trainer's metrics files, Prometheus counters, the final-loss rule.
 */
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS, LIMITS, parseLossRateArgs, parseRates } from '../../src/cli/commands/experiment.js';
import { epochsNeeded, finalTrainLoss, flattenNumbers, parseReadyLine, readTrainerMetrics } from '../../src/experiment/loss-rate.js';

const DATA = ['--data', 'train.ndp', '--eval-data', 'eval.ndp'];
const BAD = { code: 'NDP_ERR_EXPERIMENT_BAD_OPTION' };

t.test('defaults', async (t) => {
  const o = parseLossRateArgs(DATA);
  t.same(o.rates, DEFAULTS.rates);
  t.equal(o.seeds, 3);
  t.equal(o.steps, 200);
  t.equal(o.evalEvery, 50, 'steps / 4');
  t.equal(o.evalBatches, 25);
  t.equal(o.dataSeed, 1);
  t.equal(o.loss, 'lossy');
  t.equal(o.where, 'client');
  t.equal(o.fault, 'corrupt');
  t.equal(o.parallel, 1);
  t.same(o.trainArgs, []);
  t.ok(o.trainData[0]!.endsWith('/train.ndp') && o.trainData[0]!.startsWith('/'), 'paths made absolute');
});

t.test('options, and arguments after -- go to ndp train', async (t) => {
  const o = parseLossRateArgs([...DATA, '--rates', '0, 0.05,0.2', '--seeds', '2', '--steps', '7', '--where', 'network', '--fault', 'drop', '--parallel', '2', '--', '--batch', '4']);
  t.same(o.rates, [0, 0.05, 0.2]);
  t.equal(o.evalEvery, 2, 'ceil(7 / 4)');
  t.equal(o.where, 'network');
  t.equal(o.fault, 'drop');
  t.same(o.trainArgs, ['--batch', '4']);
});

t.test('rates: fractions in [0, 1), distinct, at most the limit', async (t) => {
  t.same(parseRates('0.1,0'), [0.1, 0], 'order kept');
  t.throws(() => parseRates('0,1'), BAD, 'rate 1 would drop everything');
  t.throws(() => parseRates('-0.1'), BAD);
  t.throws(() => parseRates('0,,0.1'), BAD);
  t.throws(() => parseRates('0,abc'), BAD);
  t.throws(() => parseRates('0.1,0.1'), BAD, 'duplicates');
  const atLimit = Array.from({ length: LIMITS.rates }, (_, i) => i / 100).join(',');
  t.equal(parseRates(atLimit).length, LIMITS.rates, 'exactly the limit is fine');
  t.throws(() => parseRates(`${atLimit},0.9`), BAD, 'one over the limit');
});

t.test('integer limits are enforced at their edges', async (t) => {
  t.equal(parseLossRateArgs([...DATA, '--seeds', String(LIMITS.seeds)]).seeds, LIMITS.seeds);
  t.throws(() => parseLossRateArgs([...DATA, '--seeds', String(LIMITS.seeds + 1)]), BAD);
  t.throws(() => parseLossRateArgs([...DATA, '--seeds', '0']), BAD);
  t.equal(parseLossRateArgs([...DATA, '--parallel', String(LIMITS.parallel)]).parallel, LIMITS.parallel);
  t.throws(() => parseLossRateArgs([...DATA, '--parallel', String(LIMITS.parallel + 1)]), BAD);
  t.throws(() => parseLossRateArgs([...DATA, '--steps', '1.5']), BAD);
  t.throws(() => parseLossRateArgs([...DATA, '--steps', '10', '--eval-every', '11']), BAD, 'eval-every beyond the last step');
});

t.test('bad usage has a stable code', async (t) => {
  t.same(parseLossRateArgs([]).trainData, [], 'no data: the demo data is built');
  t.throws(() => parseLossRateArgs(['--eval-data', 'e.ndp']), BAD, 'held-out split without training data');
  t.throws(() => parseLossRateArgs(['--data', 't.ndp']), BAD, 'training data without a held-out split');
  t.throws(() => parseLossRateArgs([...DATA, '--loss', 'maybe']), BAD);
  t.throws(() => parseLossRateArgs([...DATA, '--where', 'moon']), BAD);
  t.throws(() => parseLossRateArgs([...DATA, '--fault', 'flip']), BAD);
  t.throws(() => parseLossRateArgs([...DATA, '--bogus']), BAD, 'unknown option');
  t.throws(() => parseLossRateArgs([...DATA, 'stray']), BAD, 'positional');
});

t.test("ready line: ndp serve's documented JSON", async (t) => {
  t.same(parseReadyLine('{"ready":true,"host":"127.0.0.1","udp":41000,"ws":null,"http":41002,"endpoints":{"udp":"udp://127.0.0.1:41000"}}'), { udp: 41000, http: 41002 });
  t.equal(parseReadyLine('serving 2 datasets'), undefined, 'not JSON');
  t.equal(parseReadyLine('{"udp":1}'), undefined, 'not a ready line');
  t.equal(parseReadyLine('42'), undefined);
});

t.test('trainer metrics: steps, evals (the one before step 1 as step 0) and tokens/s from ndp train --out', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ndp-metrics-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(
    join(dir, 'metrics.jsonl'),
    ['{"step":1,"loss":5,"tokensPerSecond":100,"drops":0}', '{"step":2,"loss":4,"tokensPerSecond":300,"drops":0,"evalLoss":4.5}', ''].join('\n'),
  );
  await writeFile(join(dir, 'summary.json'), '{"steps":2,"evalFirst":6,"evalLast":4.5,"tokensPerSecond":250}');
  const m = await readTrainerMetrics(dir);
  t.same(m.trainCurve, [
    { step: 1, loss: 5 },
    { step: 2, loss: 4 },
  ]);
  t.same(m.evalCurve, [
    { step: 0, loss: 6 },
    { step: 2, loss: 4.5 },
  ]);
  t.equal(m.tokensPerSecond, 250, "the trainer's own figure");
  await writeFile(join(dir, 'metrics.jsonl'), 'not json\n');
  await t.rejects(readTrainerMetrics(dir), SyntaxError, 'a broken metrics file fails the run, it is not skipped');
});

t.test('epochs to pull: enough rows for every step at the highest rate', async (t) => {
  // 100 steps × 4 rows = 400 samples (+5%); at 20% loss one epoch of 2000 delivers 1600.
  t.equal(epochsNeeded({ steps: 100, rates: [0, 0.2], trainArgs: [] }, 2000), 1);
  t.equal(epochsNeeded({ steps: 1000, rates: [0, 0.2], trainArgs: [] }, 2000), 3, '4200 rows over 1600 per epoch');
  t.equal(epochsNeeded({ steps: 1000, rates: [0], trainArgs: ['--batch', '8', '--grad-accum', '2'] }, 2000), 9, '16 rows per step');
  t.equal(epochsNeeded({ steps: 10, rates: [0], trainArgs: ['--batch', 'x'] }, 0), 42, 'a bad --batch falls back to 4; an empty dataset counts as 1');
});

t.test('final train loss is the mean of the last tenth', async (t) => {
  const curve = Array.from({ length: 20 }, (_, i) => ({ step: i + 1, loss: i + 1 }));
  t.equal(finalTrainLoss(curve), 19.5, 'last 2 of 20');
  t.equal(finalTrainLoss(curve.slice(0, 3)), 3, 'at least one step');
  t.ok(Number.isNaN(finalTrainLoss([])));
  t.same(flattenNumbers({ a: { b: 1, c: [2] }, d: 'x', e: 3 }), { 'a.b': 1, e: 3 });
});
