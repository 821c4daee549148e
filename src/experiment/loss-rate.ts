/**
 * The loss-rate experiment runner. For every (rate, seed) it runs the product's own commands as child
 * processes: `ndp serve` and `ndp pull` stream the data through a `lossy` session with the loss
 * injected where asked (the client's CRC-Drop, the server's injector, or nftables in a namespace lab),
 * then `ndp train --data` trains on exactly the samples that survived, in arrival order. It collects
 * the client's exact accounting, the injector's own counts and the trainer's metrics, and returns an
 * `ExperimentResult` for the report writer.
 *
 * Processes, not library calls: an experiment measures the product as a user runs it, and a process
 * per stage isolates runs (memory, sockets, onnxruntime threads) from each other.
 *
 * Every run sees the same stream: a fresh server on the same files and the same session parameters
 * (shuffle seed `dataSeed`, cursor 0, one rank, the same number of epochs), so runs differ only in the
 * loss and in the seed index i, which sets the model seed (base weights, LoRA init) and the
 * injector's seed to `seedBase + i`. A `StreamOrderCheck` verifies it: every delivered sample must sit
 * at the same stream position in every run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NdpError } from '../protocol/errors.js';
import type { ExperimentParameters, ExperimentResult, InjectedCounts, LossPlace, RunRecord, StepPoint } from './loss-rate-result.js';
import { openNdpFile } from '../dataset/ndp-file.js';
import type { TokenizerIdentity } from '../dataset/ndp-file-format.js';
import { StreamOrderCheck, writeDeliveredSamples } from './delivered-samples.js';
import { NetworkLab } from './network-lab.js';

export type FaultKind = ExperimentParameters['fault'];

export interface LossRateOptions extends ExperimentParameters {
  /** The .ndp file(s) the server serves for training. */
  readonly trainData: readonly string[];
  /** The held-out .ndp file the trainer evaluates on (never served for training). */
  readonly evalData: string;
  /** Report folder; each run's files go to `<out>/runs/<rate>-<seed>/` while it runs. */
  readonly out: string;
  /** A run (serve + pull + train) taking longer than this is killed and recorded as failed. Defaults to 1800 s. */
  readonly runTimeoutSeconds: number;
  /** Keep every run's files (delivered samples, pull stats, adapter, metrics) under `<out>/runs`. Defaults to false. */
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
/** The server's UDP port inside a namespace lab: the namespaces are private, so no collision is possible. */
const LAB_UDP_PORT = 7400;

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
  // Unbounded on purpose: the children are this experiment's own ndp serve / ndp train, whose stdout
  // is one short JSON record per line, not input from outside.
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

/** The ports of a server's ready line (`ndp serve` prints `{"ready":true,"udp":PORT,"ws":PORT,"http":PORT,…}`; a disabled listener is null). */
export interface ServerReady {
  readonly udp?: number;
  readonly ws?: number;
  readonly http?: number;
}

/** Parses `ndp serve`'s ready line; undefined for any other line. */
export function parseReadyLine(line: string): ServerReady | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || (value as { ready?: unknown }).ready !== true) return undefined;
  const ready: Record<string, number> = {};
  for (const key of ['udp', 'ws', 'http'] as const) {
    const port = (value as Record<string, unknown>)[key];
    if (typeof port === 'number') ready[key] = port;
  }
  return ready;
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
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/**
 * Reads `ndp train --out`: `metrics.jsonl` (one line per optimizer step: `step`, `loss`, and
 * `evalLoss` on evaluated steps) and `summary.json` (`tokensPerSecond`; `evalFirst`, the held-out
 * loss before the first step, becomes step 0 of the eval curve: the common start of every run).
 */
export async function readTrainerMetrics(dir: string): Promise<TrainerMetrics> {
  const trainCurve: StepPoint[] = [];
  const evalCurve: StepPoint[] = [];
  const summary = JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8')) as Record<string, unknown>;
  const evalFirst = num(summary.evalFirst);
  if (evalFirst !== undefined) evalCurve.push({ step: 0, loss: evalFirst });
  for (const line of (await readFile(join(dir, 'metrics.jsonl'), 'utf8')).split('\n')) {
    if (line.trim() === '') continue;
    const m = JSON.parse(line) as Record<string, unknown>;
    const step = num(m.step);
    const loss = num(m.loss);
    if (step === undefined) continue;
    if (loss !== undefined) trainCurve.push({ step, loss });
    const evalLoss = num(m.evalLoss);
    if (evalLoss !== undefined) evalCurve.push({ step, loss: evalLoss });
  }
  return { trainCurve, evalCurve, tokensPerSecond: num(summary.tokensPerSecond) ?? Number.NaN };
}

/** Mean of the last ceil(n/10) losses: the "final train loss" of a run. */
export function finalTrainLoss(curve: readonly StepPoint[]): number {
  if (curve.length === 0) return Number.NaN;
  const tail = curve.slice(-Math.max(1, Math.ceil(curve.length / 10)));
  return tail.reduce((s, p) => s + p.loss, 0) / tail.length;
}

const rateName = (rate: number): string => String(rate).replace('.', 'p');

interface RunPlan {
  readonly rate: number;
  readonly seedIndex: number;
}

/** `ndp pull` arguments of a run: the same session for every run, plus the client-side loss. */
function pullArgs(options: LossRateOptions, run: RunPlan, epochs: number): string[] {
  const args = ['--epochs', String(epochs), '--seed', String(options.dataSeed), '--loss', options.loss, '--quiet'];
  if (options.where === 'client' && run.rate > 0) args.push('--crc-drop', String(run.rate), '--crc-drop-seed', String(options.seedBase + run.seedIndex));
  return args;
}

function serverLossArgs(options: LossRateOptions, run: RunPlan): string[] {
  if (options.where !== 'server' || run.rate === 0) return [];
  return [options.fault === 'drop' ? '--inject-drop' : '--inject-corrupt', String(run.rate), '--inject-seed', String(options.seedBase + run.seedIndex)];
}

/** The value of `--name V` in an argument list, as a positive integer, or the fallback. */
function intArg(args: readonly string[], name: string, fallback: number): number {
  const i = args.lastIndexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : Number.NaN;
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

/**
 * Epochs to pull so that even the lossiest run delivers a sample for every training row: rows =
 * steps × batch × grad-accum (`ndp train`'s defaults 4 and 1 unless the trainer arguments say
 * otherwise), over what one epoch delivers at the highest rate, with 5% to spare. Every run pulls the
 * same number of epochs, so every run's stream is the same.
 */
export function epochsNeeded(options: Pick<LossRateOptions, 'steps' | 'rates' | 'trainArgs'>, samplesPerEpoch: number): number {
  const rows = options.steps * intArg(options.trainArgs, '--batch', 4) * intArg(options.trainArgs, '--grad-accum', 1);
  const survive = 1 - Math.max(0, ...options.rates);
  return Math.max(1, Math.ceil((rows * 1.05) / Math.max(1, samplesPerEpoch * survive)));
}

/** Exact injector counts from the pull stats (client CRC-Drop, or the server's END counters). */
function injectedFromPull(where: LossPlace, stats: Record<string, number>): InjectedCounts | undefined {
  if (where === 'client') {
    return { counter: 'client', seen: (stats['frames.received'] ?? 0) - (stats['frames.control'] ?? 0), dropped: stats['frames.dropped.augment'] ?? 0, corrupted: 0 };
  }
  if (where === 'server') {
    const dropped = stats['serverTotals.injectedDrop'] ?? 0;
    return { counter: 'server', seen: (stats['serverTotals.frames'] ?? 0) + dropped, dropped, corrupted: stats['serverTotals.injectedCorrupt'] ?? 0 };
  }
  return undefined;
}

/** The dataset facts the delivered-samples file must carry (tokenizer identity, SRC) and the epoch size. */
interface SourceFacts {
  readonly name: string;
  readonly tokenizer: TokenizerIdentity;
  readonly src: number;
  readonly samples: number;
}

async function sourceFacts(paths: readonly string[]): Promise<SourceFacts> {
  let samples = 0;
  let first: Omit<SourceFacts, 'samples'> | undefined;
  for (const path of paths) {
    const file = await openNdpFile(path);
    try {
      samples += file.sampleCount;
      first ??= { name: file.name, tokenizer: file.tokenizer, src: file.src };
    } finally {
      await file.close();
    }
  }
  if (first === undefined) throw new NdpError('NDP_ERR_EXPERIMENT_BAD_OPTION', 'no training data');
  return { ...first, samples };
}

interface RunContext {
  readonly options: LossRateOptions;
  readonly source: SourceFacts;
  readonly epochs: number;
  readonly order: StreamOrderCheck;
}

function failure(message: string, process: Spawned): NdpError {
  return new NdpError('NDP_ERR_EXPERIMENT_RUN_FAILED', `${message}\n${process.stderrTail().trim()}`);
}

/**
 * One run in two stages, both the product's own commands: (1) stream — `ndp serve` and `ndp pull`
 * (a lossy session with the loss injected where asked) write exactly the samples that survived, in
 * arrival order, with the client's full accounting; (2) train — `ndp train --data` on those samples,
 * in that order, evaluated on the held-out split. Splitting the stages keeps training time out of the
 * stream's timing and makes each run's training data an exact, checked record.
 */
async function runOne(ctx: RunContext, run: RunPlan): Promise<RunRecord> {
  const { options } = ctx;
  const modelSeed = options.seedBase + run.seedIndex;
  const runDir = join(options.out, 'runs', `${rateName(run.rate)}-${run.seedIndex}`);
  await rm(runDir, { recursive: true, force: true });
  await mkdir(runDir, { recursive: true });
  const started = Date.now();
  const commands: Record<string, string[]> = {};
  let lab: NetworkLab | undefined;
  const children: Spawned[] = [];
  const base = { rate: run.rate, seedIndex: run.seedIndex, modelSeed, lossSeed: modelSeed, commands };
  const timeout = setTimeout(() => {
    for (const c of children) c.child.kill('SIGKILL');
  }, options.runTimeoutSeconds * 1000);
  const launch = (argv: string[]): Spawned => {
    const p = start(argv, process.cwd());
    children.push(p);
    // Nothing reads these processes' stdout otherwise; an unread pipe would stall them.
    void (async () => {
      for await (const _ of p.stdoutLines);
    })();
    return p;
  };
  try {
    const node = process.execPath;
    let host = '127.0.0.1';
    let serverArgv = [node, CLI, 'serve', ...options.trainData, '--host', host, '--udp', '0', '--ws', 'off', '--http', 'off', ...serverLossArgs(options, run)];
    if (options.where === 'network') {
      lab = await NetworkLab.create({
        dropRate: options.fault === 'drop' ? run.rate : 0,
        corruptRate: options.fault === 'corrupt' ? run.rate : 0,
        dataPort: LAB_UDP_PORT,
      });
      host = lab.serverAddress;
      serverArgv = lab.command('server', [node, CLI, 'serve', ...options.trainData, '--host', host, '--udp', String(LAB_UDP_PORT), '--ws', 'off', '--http', 'off']);
    }
    commands.serve = serverArgv;
    const server = start(serverArgv, process.cwd());
    children.push(server);
    const ready = await waitReady(server).catch((err: unknown) => {
      throw failure(`server did not start: ${(err as Error).message}`, server);
    });
    void (async () => {
      for await (const _ of server.stdoutLines);
    })();

    const delivered = join(runDir, 'delivered.jsonl');
    const statsFile = join(runDir, 'pull-stats.json');
    let pullArgv = [node, CLI, 'pull', '--server', `udp://${host}:${ready.udp ?? LAB_UDP_PORT}`, ...pullArgs(options, run, ctx.epochs), '--out', delivered, '--stats', statsFile];
    if (lab !== undefined) pullArgv = lab.command('client', pullArgv);
    commands.pull = pullArgv;
    const pull = launch(pullArgv);
    const pulled = await pull.exited;
    if (pulled.code !== 0) throw failure(`ndp pull exited with ${pulled.code ?? pulled.signal}`, pull);
    const accounting = flattenNumbers(JSON.parse(await readFile(statsFile, 'utf8')));
    const injected = lab !== undefined ? { counter: 'nft' as const, ...(await lab.counters()) } : injectedFromPull(options.where, accounting);
    await stop(server);
    await lab?.close();
    lab = undefined;

    const deliveredNdp = join(runDir, 'delivered.ndp');
    const delivery = await writeDeliveredSamples(delivered, deliveredNdp, ctx.source, ctx.order);
    if (!options.keepRuns) await rm(delivered, { force: true });

    const trainDir = join(runDir, 'train');
    const trainArgv = [
      node,
      CLI,
      'train',
      '--data',
      deliveredNdp,
      '--eval-file',
      options.evalData,
      '--eval-batches',
      String(options.evalBatches),
      '--eval-every',
      String(options.evalEvery),
      '--model',
      options.model,
      '--steps',
      String(options.steps),
      '--seed',
      String(modelSeed),
      '--out',
      trainDir,
      ...options.trainArgs,
    ];
    commands.train = trainArgv;
    const trainer = launch(trainArgv);
    const trained = await trainer.exited;
    if (trained.code !== 0) throw failure(`ndp train exited with ${trained.code ?? trained.signal}`, trainer);
    const metrics = await readTrainerMetrics(trainDir);
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
      accounting,
      delivery,
      ...(injected === undefined ? {} : { injected }),
    };
  } catch (err) {
    return {
      ...base,
      ok: false,
      error: (err as Error).message ?? String(err),
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
    for (const c of children.reverse()) await stop(c);
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
  const source = await sourceFacts(options.trainData);
  const ctx: RunContext = { options, source, epochs: epochsNeeded(options, source.samples), order: new StreamOrderCheck() };
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < plans.length) {
      const i = next++;
      const plan = plans[i]!;
      options.onProgress?.(`[${i + 1}/${plans.length}] rate ${plan.rate} seed ${plan.seedIndex}: started`);
      const record = await runOne(ctx, plan);
      records[i] = record;
      done++;
      options.onProgress?.(
        `[${done}/${plans.length} done] rate ${plan.rate} seed ${plan.seedIndex}: ` +
          (record.ok ? `eval ${record.finalEvalLoss.toFixed(4)}, train ${record.finalTrainLoss.toFixed(4)}, ${record.tokensPerSecond.toFixed(0)} tokens/s, ${record.wallSeconds.toFixed(1)} s` : `FAILED: ${record.error?.split('\n')[0] ?? ''}`),
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.parallel, plans.length) }, worker));
  if (!options.keepRuns) await rm(join(options.out, 'runs'), { recursive: true, force: true });
  const { trainData: _t, evalData: _e, out: _o, runTimeoutSeconds: _r, keepRuns: _k, onProgress: _p, ...parameters } = options;
  return {
    experiment: 'loss-rate',
    command,
    startedAt,
    finishedAt: new Date().toISOString(),
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${process.platform} ${process.arch}` },
    parameters: { ...parameters, pullEpochs: ctx.epochs },
    runs: records,
  };
}
