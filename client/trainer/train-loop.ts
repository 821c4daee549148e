/**
 * The training loop over any `TrainingBackend` and any async iterable of batches (the network
 * client's `batches()`, a local .ndp file): pulls `gradAccum` micro-batches per optimizer step,
 * measures how long it waited for data, evaluates held-out batches, and writes one JSON line of
 * metrics per optimizer step.
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Batch } from '../batch.js';
import type { TrainingBackend } from './training-backend.js';

export interface TrainLoopOptions {
  /** Optimizer steps to take (fewer when the data ends first). Required, ≥ 1. */
  readonly steps: number;
  /** Micro-batches per optimizer step; must equal the backend's `gradAccum`. Defaults to 1. */
  readonly gradAccum?: number;
  /** Evaluate `evalBatches` every N optimizer steps (also before the first and after the last). 0 = only before and after. Defaults to 0. */
  readonly evalEvery?: number;
  /** Held-out batches; no evaluation without them. */
  readonly evalBatches?: readonly Batch[];
  /** JSON-lines metrics file (truncated at start). Defaults to none. */
  readonly metricsFile?: string;
  /** Samples (and frames) dropped so far by the data path, by reason (the client's accounting). */
  readonly drops?: () => DropCounts;
  /** Called after every optimizer step (progress display). */
  readonly onStep?: (m: StepMetrics) => void;
}

/** Drops by reason: samples lost to training, and frames dropped on the way (repaired or not). */
export interface DropCounts {
  readonly samples: Readonly<Record<string, number>>;
  readonly frames?: Readonly<Record<string, number>>;
}

/** One JSON line of the metrics file. */
export interface StepMetrics {
  readonly step: number;
  /** Token-weighted mean loss over the step's micro-batches. */
  readonly loss: number;
  readonly lossTokens: number;
  /** Non-padding tokens of the step's batches. */
  readonly tokens: number;
  /** tokens / stepMs. */
  readonly tokensPerSecond: number;
  /** Wall time of the step, data waits included. */
  readonly stepMs: number;
  /** Time inside the backend. */
  readonly computeMs: number;
  /** Time spent waiting for the next batch. */
  readonly dataStallMs: number;
  readonly gradNorm: number | null;
  /** Samples dropped by the data path so far (sum over reasons). */
  readonly drops: number;
  /** Frames dropped so far (CRC, augmentation, duplicates, …; repaired ones included). */
  readonly frameDrops: number;
  readonly evalLoss?: number;
}

export interface TrainSummary {
  readonly steps: number;
  readonly microBatches: number;
  readonly firstLoss: number;
  readonly lastLoss: number;
  readonly evalFirst?: number;
  readonly evalLast?: number;
  readonly tokens: number;
  readonly tokensPerSecond: number;
  readonly wallMs: number;
  readonly computeMs: number;
  readonly dataStallMs: number;
  /** dataStallMs as a share of wallMs. */
  readonly dataStallPercent: number;
  readonly drops: DropCounts;
  /** True when the data ended before `steps`. */
  readonly dataEnded: boolean;
}

/** Token-weighted mean loss over batches, unchanged state. */
export async function evaluateBatches(backend: TrainingBackend, batches: readonly Batch[]): Promise<number> {
  let sum = 0;
  let tokens = 0;
  for (const b of batches) {
    const r = await backend.evaluate(b);
    if (r.lossTokens > 0) {
      sum += r.loss * r.lossTokens;
      tokens += r.lossTokens;
    }
  }
  return tokens > 0 ? sum / tokens : NaN;
}

export async function trainLoop(backend: TrainingBackend, batches: AsyncIterable<Batch>, options: TrainLoopOptions): Promise<TrainSummary> {
  const gradAccum = options.gradAccum ?? 1;
  const evalEvery = options.evalEvery ?? 0;
  const evalBatches = options.evalBatches ?? [];
  if (!(Number.isInteger(options.steps) && options.steps >= 1)) throw new RangeError(`steps must be an integer ≥ 1, got ${options.steps}`);
  if (options.metricsFile !== undefined) {
    mkdirSync(dirname(options.metricsFile), { recursive: true });
    writeFileSync(options.metricsFile, '');
  }
  const sum = (r: Readonly<Record<string, number>> | undefined): number => Object.values(r ?? {}).reduce((a, b) => a + b, 0);
  const started = performance.now();
  const evalFirst = evalBatches.length > 0 ? await evaluateBatches(backend, evalBatches) : undefined;
  let evalLast = evalFirst;
  const iterator = batches[Symbol.asyncIterator]();
  let steps = 0;
  let microBatches = 0;
  let tokens = 0;
  let computeMs = 0;
  let dataStallMs = 0;
  let firstLoss = NaN;
  let lastLoss = NaN;
  let dataEnded = false;
  try {
    while (steps < options.steps && !dataEnded) {
      const stepStart = performance.now();
      let lossSum = 0;
      let lossTokens = 0;
      let stepTokens = 0;
      let stepCompute = 0;
      let stepStall = 0;
      let gradNorm: number | null = null;
      let micro = 0;
      while (micro < gradAccum) {
        const waitStart = performance.now();
        const next = await iterator.next();
        stepStall += performance.now() - waitStart;
        if (next.done === true) {
          dataEnded = true;
          break;
        }
        const r = await backend.step(next.value);
        micro++;
        stepTokens += next.value.tokenCount;
        stepCompute += r.computeMs;
        if (r.lossTokens > 0) {
          lossSum += r.loss * r.lossTokens;
          lossTokens += r.lossTokens;
        }
        if (r.updated) gradNorm = r.gradNorm ?? null;
      }
      if (micro === 0) break;
      microBatches += micro;
      // A partial accumulation group at the end of the data trains nothing: it is not a step.
      if (micro < gradAccum) break;
      steps++;
      const stepMs = performance.now() - stepStart;
      const loss = lossTokens > 0 ? lossSum / lossTokens : NaN;
      if (steps === 1) firstLoss = loss;
      lastLoss = loss;
      tokens += stepTokens;
      computeMs += stepCompute;
      dataStallMs += stepStall;
      let evalLoss: number | undefined;
      if (evalBatches.length > 0 && ((evalEvery > 0 && steps % evalEvery === 0) || steps === options.steps)) {
        evalLoss = await evaluateBatches(backend, evalBatches);
        evalLast = evalLoss;
      }
      const m: StepMetrics = {
        step: steps,
        loss,
        lossTokens,
        tokens: stepTokens,
        tokensPerSecond: stepTokens / (stepMs / 1000),
        stepMs,
        computeMs: stepCompute,
        dataStallMs: stepStall,
        gradNorm,
        drops: sum(options.drops?.().samples),
        frameDrops: sum(options.drops?.().frames),
        ...(evalLoss !== undefined ? { evalLoss } : {}),
      };
      if (options.metricsFile !== undefined) appendFileSync(options.metricsFile, JSON.stringify(m) + '\n');
      options.onStep?.(m);
    }
  } finally {
    await iterator.return?.();
  }
  if (dataEnded && evalBatches.length > 0 && steps > 0 && steps < options.steps) evalLast = await evaluateBatches(backend, evalBatches);
  const wallMs = performance.now() - started;
  return {
    steps,
    microBatches,
    firstLoss,
    lastLoss,
    ...(evalFirst !== undefined ? { evalFirst } : {}),
    ...(evalLast !== undefined ? { evalLast } : {}),
    tokens,
    tokensPerSecond: tokens / (wallMs / 1000),
    wallMs,
    computeMs,
    dataStallMs,
    dataStallPercent: wallMs > 0 ? (100 * dataStallMs) / wallMs : 0,
    drops: options.drops?.() ?? { samples: {} },
    dataEnded,
  };
}
