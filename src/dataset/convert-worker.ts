/**
 * Worker thread of `ndp convert`: loads the tokenizer once, then turns batches of input records into
 * samples. Messages in: `{ type: 'batch', seq, records }`; out: `{ type: 'ready' }` after loading,
 * `{ type: 'result', seq, results }` per batch (token arrays transferred, not copied), or
 * `{ type: 'error', message }` when the tokenizer does not load.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { InputRecord } from './input-reader.js';
import { processRecords, templateRenderer, type RecordResult } from './record-processor.js';
import type { TokenizeOptions } from './tokenize-record.js';
import { loadTokenizer, type TokenizerEngine } from './tokenizer.js';

export interface ConvertWorkerData {
  readonly tokenizer: string;
  readonly engine: TokenizerEngine;
  readonly tokenize: TokenizeOptions;
}

export type WorkerRecord = Pick<InputRecord, 'kind' | 'text' | 'skip'>;

const port = parentPort!;
const data = workerData as ConvertWorkerData;

try {
  const tokenizer = await loadTokenizer(data.tokenizer, { engine: data.engine });
  const renderer = templateRenderer(tokenizer);
  port.on('message', (message: { type: 'batch'; seq: number; records: WorkerRecord[] }) => {
    void (async () => {
      const results: RecordResult[] = await processRecords(message.records, tokenizer, renderer, data.tokenize);
      const transfer: ArrayBuffer[] = [];
      for (const r of results) if (r.ok) for (const s of r.samples) transfer.push(s.tokens.buffer as ArrayBuffer, s.lossMask.buffer as ArrayBuffer);
      port.postMessage({ type: 'result', seq: message.seq, results }, transfer);
    })().catch((err: unknown) => port.postMessage({ type: 'error', message: (err as Error).stack ?? String(err) }));
  });
  port.postMessage({ type: 'ready' });
} catch (err) {
  port.postMessage({ type: 'error', message: (err as Error).message, code: (err as { code?: string }).code });
}
