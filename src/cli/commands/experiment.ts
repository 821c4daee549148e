/**
 * `ndp experiment loss-rate`: does dropping data frames (the seed's "CRC-Drop") lower the loss?
 * Trains one LoRA run per (rate, seed) against a real server and writes a report with a computed
 * conclusion (src/experiment/). See the README section "ndp experiment".
 */
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { NdpError, isNdpError } from '../../protocol/errors.js';
import { analyze } from '../../experiment/loss-rate-analysis.js';
import { type LossPlace, LOSS_PLACES } from '../../experiment/loss-rate-result.js';
import { DEFAULT_RUN_TIMEOUT_SECONDS, type FaultKind, type LossRateOptions, killLiveChildren, runLossRate } from '../../experiment/loss-rate.js';
import { REPORT_FILES, readExperimentResult, writeReport } from '../../experiment/loss-rate-report.js';
import { NetworkLab } from '../../experiment/network-lab.js';
import { buildDemoData } from '../../dataset/demo-data.js';

/** Exit code when `--where network` cannot run here (the automake convention for "skipped"). */
export const EXIT_SKIPPED = 77;

export const DEFAULTS = {
  rates: [0, 0.01, 0.05, 0.1, 0.2],
  seeds: 3,
  steps: 200,
  where: 'client' as LossPlace,
  fault: 'corrupt' as FaultKind,
  model: 'tiny',
  loss: 'lossy' as const,
  seedBase: 1,
  dataSeed: 1,
  evalBatches: 25,
  parallel: 1,
  out: 'loss-rate-report',
} as const;

/** Upper bounds that keep a typo from launching a week of runs. */
export const LIMITS = { rates: 32, seeds: 100, steps: 1_000_000, parallel: 64, evalBatches: 10_000 } as const;

export const usage = `usage: ndp experiment loss-rate [options] [-- extra ndp train arguments]
       ndp experiment report DIR   (re-render DIR's REPORT.md and plots from DIR/runs.json)

Runs, per (loss rate, seed), the product's own commands: \`ndp serve\` + \`ndp pull\` stream the data
over UDP through a lossy session with frames lost at that rate, then \`ndp train --data\` trains a
LoRA on exactly the samples that survived, in arrival order. Writes a report: REPORT.md
(table: mean ± std over seeds, computed conclusion: does any rate beat 0% beyond seed-to-seed noise,
by a paired t-test over seeds, Holm-adjusted; Welch's unpaired test as a cross-check), loss-vs-step.svg, eval-loss-vs-rate.svg and runs.json (raw).

Every run sees the same stream (a fresh server per run, the same session parameters: shuffle seed,
cursor 0, epochs), checked: every delivered sample must sit at the same stream position in every run. Seed index i sets the model seed (base weights, LoRA init) and the loss injector's seed to
seed-base + i; the data order never varies.

options:
  --rates LIST       comma-separated loss rates in [0, 1) (default ${DEFAULTS.rates.join(',')}; at most ${LIMITS.rates})
  --seeds N          seeds per rate (default ${DEFAULTS.seeds}; 1..${LIMITS.seeds}; 1 seed = no test possible)
  --steps N          optimizer steps per run (default ${DEFAULTS.steps}, as the seed's claim)
  --eval-every N     held-out eval every N steps (default: steps / 4, rounded up; also before
                     the first step and after the last)
  --eval-batches K   held-out batches per eval, 4 samples each unless --batch is passed to ndp
                     train (default ${DEFAULTS.evalBatches})
  --where W          client: the trainer's CRC-Drop (ndp train --crc-drop P);
                     server: the server's injector (ndp serve --inject-corrupt|--inject-drop P);
                     network: nftables on a veth pair between two network namespaces (root only;
                     rates resolve to 1/10000) (default ${DEFAULTS.where})
  --fault F          server and network: corrupt (bits flipped, CRC fails: the seed's scenario) or
                     drop (frame lost) (default ${DEFAULTS.fault})
  --model M          ndp train --model (default ${DEFAULTS.model})
  --data FILE.ndp    training data the server serves (repeatable; with --eval-data). Default:
                     the demo's synthetic pattern task (2000 train samples), built in a temp dir
  --eval-data FILE   held-out .ndp split, never trained on (default: the demo's 200 held-out
                     samples of the pattern task)
  --data-seed S      shuffle seed of every run's session: one data order for all (default ${DEFAULTS.dataSeed})
  --loss P           session loss policy: lossy (a hit frame's sample is dropped: the seed's
                     augmentation) or repair (hit frames are resent: loss never reaches training)
                     (default ${DEFAULTS.loss})
  --seed-base B      model and loss seeds are B + seed index (default ${DEFAULTS.seedBase})
  --parallel N       runs at a time (default ${DEFAULTS.parallel}; 1..${LIMITS.parallel})
  --run-timeout S    seconds before a run is killed and recorded as failed (default ${DEFAULT_RUN_TIMEOUT_SECONDS})
  --keep-runs        keep each run's trainer output under OUT/runs/
  --out DIR          report folder (default ${DEFAULTS.out})

exit status: 0 report written; 1 error; 2 bad usage; ${EXIT_SKIPPED} --where network not permitted here
(NDP_ERR_NETNS_UNAVAILABLE: needs root, iproute2 and nftables).`;

function bad(message: string): never {
  throw new NdpError('NDP_ERR_EXPERIMENT_BAD_OPTION', message);
}

function integer(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) bad(`--${name} must be an integer ${min}..${max}, got '${value}'`);
  return n;
}

/** Parses `--rates`: distinct fractions in [0, 1), kept in the order given. */
export function parseRates(text: string): number[] {
  const rates = text.split(',').map((s) => s.trim());
  if (rates.length === 0 || rates.length > LIMITS.rates) bad(`--rates takes 1..${LIMITS.rates} values`);
  const out: number[] = [];
  for (const r of rates) {
    const n = Number(r);
    if (r === '' || !Number.isFinite(n) || n < 0 || n >= 1) bad(`--rates: each rate is a fraction in [0, 1), got '${r}'`);
    if (out.includes(n)) bad(`--rates: ${n} is given twice`);
    out.push(n);
  }
  return out;
}

/** Parses the command line into runner options (no side effects). */
export function parseLossRateArgs(argv: readonly string[]): Omit<LossRateOptions, 'onProgress'> {
  const split = argv.indexOf('--');
  const own = split < 0 ? [...argv] : argv.slice(0, split);
  const trainArgs = split < 0 ? [] : argv.slice(split + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: own,
      options: {
        rates: { type: 'string' },
        seeds: { type: 'string' },
        steps: { type: 'string' },
        'eval-every': { type: 'string' },
        where: { type: 'string' },
        fault: { type: 'string' },
        model: { type: 'string' },
        data: { type: 'string', multiple: true },
        'eval-data': { type: 'string' },
        'data-seed': { type: 'string' },
        'eval-batches': { type: 'string' },
        loss: { type: 'string' },
        'seed-base': { type: 'string' },
        parallel: { type: 'string' },
        'run-timeout': { type: 'string' },
        'keep-runs': { type: 'boolean' },
        out: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    bad((err as Error).message);
  }
  const v = parsed.values;
  const where = (v.where ?? DEFAULTS.where) as LossPlace;
  if (!LOSS_PLACES.includes(where)) bad(`--where must be one of ${LOSS_PLACES.join(', ')}, got '${v.where}'`);
  const loss = v.loss ?? DEFAULTS.loss;
  if (loss !== 'lossy' && loss !== 'repair') bad(`--loss must be lossy or repair, got '${v.loss}'`);
  const fault = (v.fault ?? DEFAULTS.fault) as FaultKind;
  if (fault !== 'corrupt' && fault !== 'drop') bad(`--fault must be corrupt or drop, got '${v.fault}'`);
  const rates = v.rates === undefined ? [...DEFAULTS.rates] : parseRates(v.rates);
  const steps = integer('steps', v.steps, DEFAULTS.steps, 1, LIMITS.steps);
  if ((v.data === undefined) !== (v['eval-data'] === undefined)) bad('--data and --eval-data go together (a training split and its held-out split)');
  return {
    rates,
    seeds: integer('seeds', v.seeds, DEFAULTS.seeds, 1, LIMITS.seeds),
    steps,
    evalEvery: integer('eval-every', v['eval-every'], Math.ceil(steps / 4), 1, steps),
    evalBatches: integer('eval-batches', v['eval-batches'], DEFAULTS.evalBatches, 1, LIMITS.evalBatches),
    dataSeed: integer('data-seed', v['data-seed'], DEFAULTS.dataSeed, 0, 0xffffffff),
    where,
    fault,
    model: v.model ?? DEFAULTS.model,
    trainData: (v.data ?? []).map((p) => resolve(p)),
    evalData: v['eval-data'] === undefined ? '' : resolve(v['eval-data']),
    loss,
    seedBase: integer('seed-base', v['seed-base'], DEFAULTS.seedBase, 0, 0xffffffff - LIMITS.seeds),
    parallel: integer('parallel', v.parallel, DEFAULTS.parallel, 1, LIMITS.parallel),
    runTimeoutSeconds: integer('run-timeout', v['run-timeout'], DEFAULT_RUN_TIMEOUT_SECONDS, 1, 7 * 24 * 3600),
    keepRuns: v['keep-runs'] ?? false,
    out: resolve(v.out ?? DEFAULTS.out),
    trainArgs,
  };
}

/** The command line as typed, quoted so it can be pasted back into a shell. */
function shellLine(argv: readonly string[]): string {
  return ['ndp', 'experiment', 'loss-rate', ...argv].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

async function lossRate(argv: string[]): Promise<number> {
  const options = parseLossRateArgs(argv);
  if (options.where === 'network') {
    try {
      await (await NetworkLab.create({})).close();
    } catch (err) {
      if (!isNdpError(err, 'NDP_ERR_NETNS_UNAVAILABLE')) throw err;
      process.stderr.write(`ndp experiment: skipping --where network: ${err.code}: ${err.message}\n`);
      return EXIT_SKIPPED;
    }
  }
  // Children and namespace labs must not outlive an interrupted experiment.
  const onSignal = (): void => {
    killLiveChildren();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const scratch = await mkdtemp(join(tmpdir(), 'ndp-experiment-'));
  try {
    let data = { trainData: options.trainData, evalData: options.evalData };
    if (data.trainData.length === 0) {
      // The pattern task only: its held-out loss moves within a few hundred steps of the tiny model.
      const demo = await buildDemoData(scratch, { codeFiles: 0 });
      process.stderr.write(`ndp experiment: demo data: ${demo.trainSamples} train / ${demo.evalSamples} held-out samples of the pattern task\n`);
      data = { trainData: [demo.train], evalData: demo.eval };
    }
    const result = await runLossRate({ ...options, ...data, onProgress: (line) => process.stderr.write(`${line}\n`) }, shellLine(argv));
    await writeReport(options.out, result);
    const analysis = analyze(result);
    process.stdout.write(`${analysis.conclusion}\n${analysis.powerNote}\nreport: ${join(options.out, REPORT_FILES.report)}\n`);
    return result.runs.every((r) => r.ok) ? 0 : 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Re-renders a report folder from its runs.json (after a change to the report, with no rerun). */
async function rerender(dir: string | undefined): Promise<number> {
  if (dir === undefined) bad('ndp experiment report DIR: the report folder is missing');
  const result = await readExperimentResult(join(dir, REPORT_FILES.raw));
  await writeReport(dir, result);
  process.stdout.write(`${analyze(result).conclusion}\nreport: ${join(dir, REPORT_FILES.report)}\n`);
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'report') {
    try {
      return await rerender(rest[0]);
    } catch (err) {
      if (!isNdpError(err, 'NDP_ERR_EXPERIMENT_BAD_OPTION')) throw err;
      process.stderr.write(`ndp experiment: ${err.code}: ${err.message}\n`);
      return 2;
    }
  }
  if (sub !== 'loss-rate') {
    process.stderr.write(`ndp experiment: unknown experiment '${sub ?? ''}'\n${usage}\n`);
    return 2;
  }
  try {
    return await lossRate(rest);
  } catch (err) {
    if (isNdpError(err, 'NDP_ERR_EXPERIMENT_BAD_OPTION')) {
      process.stderr.write(`ndp experiment: ${err.code}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
