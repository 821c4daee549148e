/**
 * The loss-rate experiment runner: for every (rate, seed) it starts a data server (`ndp serve`) and a
 * trainer (`ndp train`) as child processes, with the loss injected where asked (the trainer's
 * CRC-Drop, the server's injector, or nftables in a namespace lab), collects the trainer's metrics and
 * the injector's exact counts, and returns an `ExperimentResult` for the report writer.
 *
 * It composes the CLI commands as processes on purpose: an experiment measures the product as a user
 * runs it, and a process per run isolates runs (memory, sockets, onnxruntime threads) from each other.
 *
 * Every run of one experiment sees the same data in the same order: each run opens a fresh server
 * session with the same parameters (the same shuffle seed, cursor 0, one rank, `lossy`), so runs differ
 * only in the loss and in the seed index i, which sets the model seed (base weights and LoRA init)
 * and the injector's seed to `seedBase + i`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NdpError } from '../protocol/errors.js';
import type { ExperimentParameters, ExperimentResult, InjectedCounts, LossPlace, RunRecord, StepPoint } from './loss-rate-result.js';
import { NetworkLab } from './network-lab.js';

export type FaultKind = ExperimentParameters['fault'];

export interface LossRateOptions extends ExperimentParameters {
  /** The .ndp file(s) the server serves for training. */
  readonly trainData: readonly string[];
  /** The held-out .ndp file the trainer evaluates on (never served for training). */
  readonly evalData: string;
  /** Report folder; each run's trainer output goes to `<out>/runs/<rate>-<seed>/`. */
  readonly out: string;
  /** A run (server + trainer) taking longer than this is killed and recorded as failed. Defaults to 1800 s. */
  readonly runTimeoutSeconds: number;
  /** Keep every run's trainer output (adapter, metrics) under `<out>/runs`. Defaults to false. */
  readonly keepRuns: boolean;
  /** Called with one line per event (run started, run finished). */
  readonly onProgress?: (line: string) => void;
}

export const DEFAULT_RUN_TIMEOUT_SECONDS = 1800;
/** How long a server gets to print its ready line. */
const SERVER_READY_TIMEOUT_MS = 60_000;
/** How long a stopped process gets after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 10_000;
/** Stderr kept per process for error reports. */
const STDERR_TAIL_BYTES = 8192;
/** Fixed ports inside a namespace lab: the namespaces are private, so no collision is possible. */
const LAB_PORTS = { udp: 7400, http: 7402 } as const;

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** Child processes alive now, killed if the experiment is interrupted. */
const liveChildren = new Set<ChildProcess>();

export function killLiveChildren(): void {
  for (const child of liveChildren) child.kill('SIGKILL');
}

interface Spawned {
  readonly child: ChildProcess;
  readonly stdoutLines: AsyncIterableIterator<string>;
  stderrTail(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(argv: readonly string[], cwd: string): Spawned {
  const [file, ...args] = argv;
  const child = spawn(file!, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-STDERR_TAIL_BYTES);
  });
  const exited = once(child, 'exit').then(([code, signal]) => {
    liveChildren.delete(child);
    return { code: code as number | null, signal: signal as NodeJS.Signals | null };
  });
  child.on('error', () => liveChildren.delete(child));
  return { child, stdoutLines: lines(child), stderrTail: () => stderr, exited };
}

async function* lines(child: ChildProcess): AsyncIterableIterator<string> {
  let buffered = '';
  for await (const chunk of child.stdout!.setEncoding('utf8') as AsyncIterable<string>) {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      yield buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
    }
  }
  if (buffered.length > 0) yield buffered;
}

async function stop(p: Spawned): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), STOP_GRACE_MS);
  await p.exited;
  clearTimeout(timer);
}

/** The server's ready line: the first stdout line that is a JSON object naming its ports. */
export interface ServerReady {
  readonly udp?: number;
  readonly ws?: number;
  readonly http?: number;
}

/** Finds the UDP/WS/HTTP ports in a JSON ready line, whatever nesting the server uses (`{ports:{udp}}`, `{udp:{port}}`, `{udp}`). */
export function parseReadyLine(line: string): ServerReady | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const found: Record<string, number> = {};
  const visit = (v: unknown, key: string | undefined, depth: number): void => {
    if (depth > 4) return;
    if (key !== undefined && (key === 'udp' || key === 'ws' || key === 'http') && found[key] === undefined) {
      if (typeof v === 'number') found[key] = v;
      else if (typeof v === 'string') {
        const m = /:(\d+)\/?$/.exec(v);
        if (m !== null) found[key] = Number(m[1]);
      } else if (typeof v === 'object' && v !== null && typeof (v as { port?: unknown }).port === 'number') found[key] = (v as { port: number }).port;
    }
    if (typeof v === 'object' && v !== null) for (const [k, child] of Object.entries(v)) visit(child, k, depth + 1);
  };
  visit(value, undefined, 0);
  return found.udp === undefined && found.http === undefined ? undefined : found;
}

async function waitReady(server: Spawned): Promise<ServerReady> {
  const timeout = new Promise<never>((_, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line within ${SERVER_READY_TIMEOUT_MS} ms`)), SERVER_READY_TIMEOUT_MS);
    void server.exited.then(() => {
      clearTimeout(timer);
      reject(new Error('server exited before it was ready'));
    });
  });
  const ready = (async () => {
    for await (const line of server.stdoutLines) {
      const parsed = parseReadyLine(line);
      if (parsed !== undefined) return parsed;
    }
    throw new Error('server closed stdout before it was ready');
  })();
  return Promise.race([ready, timeout]);
}

/** Flattens nested numeric fields to dotted keys: `{frames: {dropped: {crc: 3}}}` → `{'frames.dropped.crc': 3}`. */
export function flattenNumbers(value: unknown, prefix = '', out: Record<string, number> = {}): Record<string, number> {
  if (typeof value === 'number' && Number.isFinite(value)) out[prefix] = value;
  else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flattenNumbers(v, prefix === '' ? k : `${prefix}.${k}`, out);
  }
  return out;
}

/** What a run needs to know from the trainer's output folder. */
export interface TrainerMetrics {
  readonly trainCurve: StepPoint[];
  readonly evalCurve: StepPoint[];
  readonly tokensPerSecond: number;
  readonly accounting: Record<string, number>;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * Reads the trainer's JSON-lines metrics (every `*.jsonl` in its `--out`) and summary (`*.json`).
 * A line with `step` and `loss` is a training step; a line with `evalLoss` (or `eval_loss`, or
 * `kind: "eval"` with `loss`) is a held-out evaluation. tokens/s is the summary's figure, else the
 * mean of the steps'.
 */
export async function readTrainerMetrics(dir: string): Promise<TrainerMetrics> {
  const trainCurve: StepPoint[] = [];
  const evalCurve: StepPoint[] = [];
  const stepRates: number[] = [];
  let accounting: Record<string, number> = {};
  let summaryRate: number | undefined;
  const names = await readdir(dir);
  for (const name of names.filter((n) => n.endsWith('.jsonl')).sort()) {
    for (const line of (await readFile(join(dir, name), 'utf8')).split('\n')) {
      if (line.trim() === '') continue;
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const step = num(m.step);
      if (step === undefined) continue;
      const evalLoss = num(m.evalLoss) ?? num(m.eval_loss) ?? (m.kind === 'eval' || m.type === 'eval' ? num(m.loss) : undefined);
      if (evalLoss !== undefined) evalCurve.push({ step, loss: evalLoss });
      if (m.kind !== 'eval' && m.type !== 'eval' && num(m.loss) !== undefined) {
        trainCurve.push({ step, loss: num(m.loss)! });
        const rate = num(m.tokensPerSecond) ?? num(m.tokens_per_s) ?? num(m.tokensPerSec);
        if (rate !== undefined) stepRates.push(rate);
      }
      for (const key of ['drops', 'accounting', 'stats']) if (typeof m[key] === 'object' && m[key] !== null) accounting = flattenNumbers(m[key]);
    }
  }
  for (const name of names.filter((n) => n.endsWith('.json') && n !== 'adapter_config.json').sort()) {
    let s: Record<string, unknown>;
    try {
      s = JSON.parse(await readFile(join(dir, name), 'utf8')) as Record<string, unknown>;
    } catch {
      continue;
    }
    summaryRate = num(s.tokensPerSecond) ?? num(s.tokens_per_s) ?? summaryRate;
    for (const key of ['accounting', 'drops', 'stats']) if (typeof s[key] === 'object' && s[key] !== null) accounting = flattenNumbers(s[key]);
  }
  const tokensPerSecond = summaryRate ?? (stepRates.length > 0 ? stepRates.reduce((a, b) => a + b, 0) / stepRates.length : Number.NaN);
  return { trainCurve, evalCurve, tokensPerSecond, accounting };
}

/** Mean of the last ceil(n/10) losses: the "final train loss" of a run. */
export function finalTrainLoss(curve: readonly StepPoint[]): number {
  if (curve.length === 0) return Number.NaN;
  const tail = curve.slice(-Math.max(1, Math.ceil(curve.length / 10)));
  return tail.reduce((s, p) => s + p.loss, 0) / tail.length;
}

/** Sums a Prometheus counter family by one label: `ndp_injected_total{kind="drop"} 12` → {drop: 12}. */
export function promCounterByLabel(text: string, metric: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`^${metric}\\{([^}]*)\\}\\s+([0-9.eE+-]+)`, 'gm');
  for (const m of text.matchAll(re)) {
    const lm = new RegExp(`${label}="([^"]*)"`).exec(m[1] ?? '');
    if (lm === null) continue;
    out[lm[1]!] = (out[lm[1]!] ?? 0) + Number(m[2]);
  }
  return out;
}

async function serverInjected(httpPort: number): Promise<InjectedCounts | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
    const counts = promCounterByLabel(await res.text(), 'ndp_injected_total', 'kind');
    return { counter: 'server', dropped: counts.drop ?? 0, corrupted: counts.corrupt ?? 0 };
  } catch {
    return undefined;
  }
}

const rateName = (rate: number): string => String(rate).replace('.', 'p');

interface RunPlan {
  readonly rate: number;
  readonly seedIndex: number;
}

/** The trainer arguments a run adds for its loss and seed (client side loss is CRC-Drop). */
function trainerLossArgs(options: LossRateOptions, run: RunPlan): string[] {
  const seed = options.seedBase + run.seedIndex;
  const args = ['--seed', String(seed)];
  if (options.where === 'client' && run.rate > 0) args.push('--crc-drop', String(run.rate), '--crc-drop-seed', String(seed));
  return args;
}

function serverLossArgs(options: LossRateOptions, run: RunPlan): string[] {
  if (options.where !== 'server' || run.rate === 0) return [];
  return [options.fault === 'drop' ? '--inject-drop' : '--inject-corrupt', String(run.rate), '--inject-seed', String(options.seedBase + run.seedIndex)];
}

async function runOne(options: LossRateOptions, run: RunPlan): Promise<RunRecord> {
  const modelSeed = options.seedBase + run.seedIndex;
  const runDir = join(options.out, 'runs', `${rateName(run.rate)}-${run.seedIndex}`);
  await rm(runDir, { recursive: true, force: true });
  await mkdir(runDir, { recursive: true });
  const started = Date.now();
  const commands: Record<string, string[]> = {};
  let lab: NetworkLab | undefined;
  let server: Spawned | undefined;
  let trainer: Spawned | undefined;
  const base = { rate: run.rate, seedIndex: run.seedIndex, modelSeed, lossSeed: modelSeed, commands };
  const timeout = setTimeout(() => {
    server?.child.kill('SIGKILL');
    trainer?.child.kill('SIGKILL');
  }, options.runTimeoutSeconds * 1000);
  try {
    const node = process.execPath;
    let host = '127.0.0.1';
    let serverArgv = [node, CLI, 'serve', ...options.trainData, '--host', host, '--udp', '0', '--ws', '0', '--http', '0', ...serverLossArgs(options, run)];
    if (options.where === 'network') {
      lab = await NetworkLab.create({
        dropRate: options.fault === 'drop' ? run.rate : 0,
        corruptRate: options.fault === 'corrupt' ? run.rate : 0,
        dataPort: LAB_PORTS.udp,
      });
      host = lab.serverAddress;
      serverArgv = lab.command('server', [node, CLI, 'serve', ...options.trainData, '--host', host, '--udp', String(LAB_PORTS.udp), '--ws', '0', '--http', String(LAB_PORTS.http)]);
    }
    commands.server = serverArgv;
    server = start(serverArgv, process.cwd());
    const ready = await waitReady(server).catch((err: unknown) => {
      throw new NdpError('NDP_ERR_EXPERIMENT_RUN_FAILED', `server did not start: ${(err as Error).message}\n${server?.stderrTail() ?? ''}`);
    });
    const udpPort = ready.udp ?? LAB_PORTS.udp;
    let trainerArgv = [
      node,
      CLI,
      'train',
      '--server',
      `udp://${host}:${udpPort}`,
      '--model',
      options.model,
      '--steps',
      String(options.steps),
      '--eval-every',
      String(options.evalEvery),
      '--eval-data',
      options.evalData,
      '--data-seed',
      String(options.dataSeed),
      '--loss',
      'lossy',
      '--out',
      runDir,
      ...trainerLossArgs(options, run),
      ...options.trainArgs,
    ];
    if (lab !== undefined) trainerArgv = lab.command('client', trainerArgv);
    commands.trainer = trainerArgv;
    trainer = start(trainerArgv, process.cwd());
    void (async () => {
      for await (const _ of trainer.stdoutLines);
    })();
    const exit = await trainer.exited;
    if (exit.code !== 0) {
      throw new NdpError('NDP_ERR_EXPERIMENT_RUN_FAILED', `trainer exited with ${exit.code ?? exit.signal}\n${trainer.stderrTail()}`);
    }
    let injected: InjectedCounts | undefined;
    if (lab !== undefined) injected = { counter: 'nft', ...(await lab.counters()) };
    else if (options.where === 'server' && ready.http !== undefined) injected = await serverInjected(ready.http);
    const metrics = await readTrainerMetrics(runDir);
    if (options.where === 'client') {
      const a = metrics.accounting;
      const dropped = Object.entries(a).find(([k]) => /frames\.dropped\.augment$/.test(k))?.[1] ?? 0;
      const seen = Object.entries(a).find(([k]) => /frames\.received$/.test(k))?.[1];
      injected = { counter: 'client', ...(seen === undefined ? {} : { seen }), dropped, corrupted: 0 };
    }
    const lastEval = metrics.evalCurve[metrics.evalCurve.length - 1];
    return {
      ...base,
      ok: true,
      trainCurve: metrics.trainCurve,
      evalCurve: metrics.evalCurve,
      finalTrainLoss: finalTrainLoss(metrics.trainCurve),
      finalEvalLoss: lastEval?.loss ?? Number.NaN,
      tokensPerSecond: metrics.tokensPerSecond,
      steps: metrics.trainCurve.length,
      wallSeconds: (Date.now() - started) / 1000,
      accounting: metrics.accounting,
      ...(injected === undefined ? {} : { injected }),
    };
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    return {
      ...base,
      ok: false,
      error: message,
      trainCurve: [],
      evalCurve: [],
      finalTrainLoss: Number.NaN,
      finalEvalLoss: Number.NaN,
      tokensPerSecond: Number.NaN,
      steps: 0,
      wallSeconds: (Date.now() - started) / 1000,
      accounting: {},
    };
  } finally {
    clearTimeout(timeout);
    if (trainer !== undefined) await stop(trainer);
    if (server !== undefined) await stop(server);
    await lab?.close();
    if (!options.keepRuns) await rm(runDir, { recursive: true, force: true });
  }
}

/**
 * Runs every (rate, seed), `parallel` at a time, seeds in the outer loop so an interrupted
 * experiment has every rate at equal depth. Failed runs are recorded, not thrown.
 */
export async function runLossRate(options: LossRateOptions, command: string): Promise<ExperimentResult> {
  const startedAt = new Date().toISOString();
  const plans: RunPlan[] = [];
  for (let seedIndex = 0; seedIndex < options.seeds; seedIndex++) for (const rate of options.rates) plans.push({ rate, seedIndex });
  const records = new Array<RunRecord>(plans.length);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < plans.length) {
      const i = next++;
      const plan = plans[i]!;
      options.onProgress?.(`[${i + 1}/${plans.length}] rate ${plan.rate} seed ${plan.seedIndex}: started`);
      const record = await runOne(options, plan);
      records[i] = record;
      done++;
      options.onProgress?.(
        `[${done}/${plans.length} done] rate ${plan.rate} seed ${plan.seedIndex}: ` +
          (record.ok ? `eval ${record.finalEvalLoss.toFixed(4)}, train ${record.finalTrainLoss.toFixed(4)}, ${record.tokensPerSecond.toFixed(0)} tokens/s, ${record.wallSeconds.toFixed(1)} s` : `FAILED: ${record.error?.split('\n')[0] ?? ''}`),
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.parallel, plans.length) }, worker));
  const { trainData: _t, evalData: _e, out: _o, runTimeoutSeconds: _r, keepRuns: _k, onProgress: _p, ...parameters } = options;
  return {
    experiment: 'loss-rate',
    command,
    startedAt,
    finishedAt: new Date().toISOString(),
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${process.platform} ${process.arch}` },
    parameters,
    runs: records,
  };
}
