/**
 * `ndp convert` as a library: inputs (JSONL, gzip JSONL, source directories) → one .ndp file.
 * Records are read in order, tokenized in batches by worker threads (or in-process with 0 workers),
 * and written in input order whatever the number of workers: the output is byte-identical for the
 * same inputs, options and tokenizer. Every record is written or skipped with a reported reason.
 */
import { availableParallelism } from 'node:os';
import { basename, extname } from 'node:path';
import { rm } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { NdpError } from '../protocol/errors.js';
import { DST } from '../protocol/registry.js';
import type { ConvertWorkerData, WorkerRecord } from './convert-worker.js';
import { inputBytes, readInputs, type InputOptions } from './input-reader.js';
import { NdpFileWriter } from './ndp-file-writer.js';
import type { TokenizerIdentity } from './ndp-file-format.js';
import { processRecords, templateRenderer, type RecordResult } from './record-processor.js';
import type { TokenizeOptions } from './tokenize-record.js';
import { EMBEDDED_TOKENIZER, loadTokenizer, type TokenizerEngine } from './tokenizer.js';

export interface ConvertOptions extends TokenizeOptions, InputOptions {
  /** `qwen3` (embedded) or a Hugging Face tokenizer folder. Defaults to 'qwen3'. */
  readonly tokenizer?: string;
  /** Tokenizer engine. Defaults to 'auto'. */
  readonly engine?: TokenizerEngine;
  /** Worker threads; 0 tokenizes in this thread. Defaults to os.availableParallelism(), or 0 for inputs under 1 MiB. */
  readonly workers?: number;
  /** Records per batch sent to a worker. Defaults to 64. */
  readonly batchRecords?: number;
  /** Fate of a bad record: 'skip' (report and count) or 'fail' (stop, no output). Defaults to 'skip'. */
  readonly onError?: 'skip' | 'fail';
  /** DST of the sample frames. Defaults to EMBEDDING. */
  readonly dst?: number;
  /** Dataset name. Defaults to the output's base name without extension. */
  readonly name?: string;
}

export interface SkippedRecord {
  readonly where: string;
  readonly code: string;
  readonly message: string;
}

export interface ConvertProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
  readonly samples: number;
  readonly tokens: number;
}

export interface ConvertHooks {
  /** Called for every skipped record, in input order. */
  onSkip?(skipped: SkippedRecord): void;
  /** Called after each written batch. */
  onProgress?(progress: ConvertProgress): void;
}

export interface ConvertSummary {
  readonly out: string;
  readonly records: number;
  readonly samples: number;
  readonly tokens: number;
  readonly trainedTokens: number;
  readonly truncated: number;
  readonly split: number;
  readonly skipped: number;
  /** Skipped records by error code. */
  readonly skippedByReason: Readonly<Record<string, number>>;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly seconds: number;
  /** Of `seconds`, the time to load the tokenizer and start the workers. */
  readonly setupSeconds: number;
  /** Tokens per second over the whole run, and over the run after setup (the steady rate). */
  readonly tokensPerSecond: number;
  readonly tokensPerSecondAfterSetup: number;
  readonly samplesPerSecond: number;
  readonly workers: number;
  readonly engine: string;
  readonly tokenizer: TokenizerIdentity;
}

const SMALL_INPUT_BYTES = 1024 * 1024;

interface Batch {
  readonly seq: number;
  readonly records: WorkerRecord[];
  readonly where: string[];
  readonly bytes: number;
}

/** Runs batches through worker threads; results come back per batch sequence number. */
class WorkerPool {
  private readonly idle: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (results: RecordResult[]) => void; reject: (err: Error) => void }>();
  private failure: Error | undefined;

  private constructor(private readonly workers: Worker[]) {}

  static async start(count: number, data: ConvertWorkerData): Promise<WorkerPool> {
    const url = new URL('./convert-worker.js', import.meta.url);
    const workers = Array.from({ length: count }, () => new Worker(url, { workerData: data }));
    const pool = new WorkerPool(workers);
    try {
      await Promise.all(
        workers.map(
          (worker) =>
            new Promise<void>((resolve, reject) => {
              worker.once('message', (m: { type: string; message?: string; code?: string }) => {
                if (m.type === 'ready') resolve();
                else reject(new NdpError((m.code as 'NDP_ERR_TOKENIZER_LOAD' | undefined) ?? 'NDP_ERR_TOKENIZER_LOAD', m.message ?? 'worker failed to start'));
              });
              worker.once('error', reject);
            }),
        ),
      );
    } catch (err) {
      await pool.close();
      throw err;
    }
    for (const worker of workers) {
      worker.on('message', (m: { type: string; seq?: number; results?: RecordResult[]; message?: string }) => {
        if (m.type === 'result') {
          const done = pool.waiting.get(m.seq!);
          pool.waiting.delete(m.seq!);
          pool.idle.push(worker);
          done?.resolve(m.results!);
        } else if (m.type === 'error') {
          pool.fail(new Error(`convert worker: ${m.message}`));
        }
      });
      worker.on('error', (err) => pool.fail(err));
      worker.on('exit', (code) => {
        if (code !== 0) pool.fail(new Error(`convert worker exited with ${code}`));
      });
      pool.idle.push(worker);
    }
    return pool;
  }

  private fail(err: Error): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    for (const { reject } of this.waiting.values()) reject(err);
    this.waiting.clear();
  }

  get hasIdle(): boolean {
    return this.idle.length > 0;
  }

  run(batch: Batch): Promise<RecordResult[]> {
    const worker = this.idle.pop()!;
    return new Promise((resolve, reject) => {
      if (this.failure !== undefined) return reject(this.failure);
      this.waiting.set(batch.seq, { resolve, reject });
      worker.postMessage({ type: 'batch', seq: batch.seq, records: batch.records });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * Converts `inputs` into the .ndp file `out`. Throws NDP_ERR_INPUT_UNREADABLE for an input that
 * cannot be read, the record's code under onError 'fail', NDP_ERR_TOKENIZER_LOAD; on any error the
 * partial output is removed.
 */
export async function convertToNdp(inputs: readonly string[], out: string, options: ConvertOptions = {}, hooks: ConvertHooks = {}): Promise<ConvertSummary> {
  const started = performance.now();
  const bytesTotal = await inputBytes(inputs);
  const tokenizerSpec = options.tokenizer ?? EMBEDDED_TOKENIZER;
  const tokenizer = await loadTokenizer(tokenizerSpec, { engine: options.engine ?? 'auto' });
  // Worker start-up (a tokenizer load each) costs seconds: small inputs are faster in-process.
  const workerCount = options.workers ?? (bytesTotal < SMALL_INPUT_BYTES ? 0 : availableParallelism());
  if (!Number.isInteger(workerCount) || workerCount < 0) throw new RangeError(`workers must be an integer ≥ 0, got ${workerCount}`);
  const tokenize: TokenizeOptions = { maxTokens: options.maxTokens ?? 0, overflow: options.overflow ?? 'truncate', ...(options.src !== undefined ? { src: options.src } : {}) };
  const onError = options.onError ?? 'skip';
  const batchRecords = options.batchRecords ?? 64;

  const writer = await NdpFileWriter.create(out, {
    name: options.name ?? basename(out, extname(out)),
    tokenizer: tokenizer.identity,
    dst: options.dst ?? DST.EMBEDDING,
    ...(options.src !== undefined ? { src: options.src } : {}),
  });
  const pool = workerCount > 0 ? await WorkerPool.start(workerCount, { tokenizer: tokenizerSpec, engine: tokenizer.engine, tokenize }).catch(async (err: unknown) => {
    await writer.abort();
    await rm(out, { force: true });
    throw err;
  }) : undefined;
  const renderer = templateRenderer(tokenizer);
  const setupSeconds = (performance.now() - started) / 1000;

  const counts = { records: 0, trained: 0, truncated: 0, split: 0, skipped: 0, bytesDone: 0 };
  const skippedByReason: Record<string, number> = {};
  const srcVotes = new Map<number, number>();

  const write = async (batch: Batch, results: RecordResult[]): Promise<void> => {
    for (const [i, result] of results.entries()) {
      counts.records++;
      if (!result.ok) {
        const skipped = { where: batch.where[i]!, code: result.code, message: result.message };
        if (onError === 'fail') throw new NdpError(result.code as 'NDP_ERR_INPUT_BAD_JSON', `${skipped.where}: ${result.message}`);
        counts.skipped++;
        skippedByReason[result.code] = (skippedByReason[result.code] ?? 0) + 1;
        hooks.onSkip?.(skipped);
        continue;
      }
      if (result.overflow === 'truncated') counts.truncated++;
      if (result.overflow === 'split') counts.split++;
      for (const sample of result.samples) {
        await writer.append(sample);
        srcVotes.set(sample.src, (srcVotes.get(sample.src) ?? 0) + 1);
        for (const m of sample.lossMask) counts.trained += m;
      }
    }
    counts.bytesDone += batch.bytes;
    hooks.onProgress?.({ bytesDone: counts.bytesDone, bytesTotal, samples: writer.sampleCount, tokens: writer.tokenCount });
  };

  // Batches go out as workers free up; results are written strictly in batch order.
  const pending = new Map<number, Promise<RecordResult[]>>();
  const batches = new Map<number, Batch>();
  let nextToWrite = 0;
  const drainOne = async (): Promise<void> => {
    const results = await pending.get(nextToWrite)!;
    await write(batches.get(nextToWrite)!, results);
    pending.delete(nextToWrite);
    batches.delete(nextToWrite);
    nextToWrite++;
  };
  const submit = async (batch: Batch): Promise<void> => {
    batches.set(batch.seq, batch);
    if (pool === undefined) {
      pending.set(batch.seq, processRecords(batch.records, tokenizer, renderer, tokenize));
      await drainOne();
      return;
    }
    while (!pool.hasIdle) await drainOne();
    const running = pool.run(batch);
    // Rejections are observed when the batch is drained; this keeps them from being "unhandled" before.
    running.catch(() => undefined);
    pending.set(batch.seq, running);
  };

  try {
    let seq = 0;
    let current: Batch = { seq, records: [], where: [], bytes: 0 };
    for await (const record of readInputs(inputs, options)) {
      current.records.push(record.skip === undefined ? { kind: record.kind, text: record.text } : { kind: record.kind, text: '', skip: record.skip });
      current.where.push(record.where);
      (current as { bytes: number }).bytes += record.bytes;
      if (current.records.length >= batchRecords) {
        await submit(current);
        current = { seq: ++seq, records: [], where: [], bytes: 0 };
      }
    }
    if (current.records.length > 0) await submit(current);
    while (pending.size > 0) await drainOne();
    let src = options.src;
    if (src === undefined) {
      let best = -1;
      for (const [code, votes] of [...srcVotes].sort((a, b) => a[0] - b[0])) if (votes > best) [src, best] = [code, votes];
    }
    const written = await writer.finish(src !== undefined ? { src } : {});
    const seconds = (performance.now() - started) / 1000;
    return {
      out,
      records: counts.records,
      samples: written.sampleCount,
      tokens: written.tokenCount,
      trainedTokens: counts.trained,
      truncated: counts.truncated,
      split: counts.split,
      skipped: counts.skipped,
      skippedByReason,
      bytesIn: bytesTotal,
      bytesOut: written.bytes,
      seconds,
      setupSeconds,
      tokensPerSecond: written.tokenCount / seconds,
      tokensPerSecondAfterSetup: written.tokenCount / Math.max(1e-9, seconds - setupSeconds),
      samplesPerSecond: written.sampleCount / seconds,
      workers: workerCount,
      engine: tokenizer.engine,
      tokenizer: tokenizer.identity,
    };
  } catch (err) {
    await writer.abort();
    await rm(out, { force: true });
    throw err;
  } finally {
    await pool?.close();
  }
}
