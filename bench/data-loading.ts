/**
 * The seed's data-loading A/B, side by side in one run on the same samples:
 *
 * - **traditional**: read the JSONL file, parse each line, tokenize on the fly, pad/truncate, build
 *   the arrays a trainer needs (input ids, attention mask, labels, positions: client/batcher.ts);
 *   once with transformers.js and once with the native `tokenizers` binding (tokenizer loaded
 *   before timing, as a training loop would);
 * - **.ndp streaming**: read frames of the converted file in large chunks, check CRCs, build the
 *   same arrays with the same batcher;
 * - **.ndp random access**: the same, reading samples in a shuffled order (what a server does).
 *
 * Then `ndp convert` throughput, 1 worker vs all workers: overall (tokenizer load included, as a user
 * sees it) and after setup (the steady rate).
 * The seed reported 799 vs 2,390 samples/s and 90,591 vs 1,221,702 tokens/s (3.0× and 13.5×).
 *
 * Run: `npm run build && node dist/bench/data-loading.js [--samples N] [--seq-len N] [--rounds N]`.
 */
import { availableParallelism, tmpdir } from 'node:os';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Batcher } from '../client/batcher.js';
import { convertToNdp } from '../src/dataset/convert.js';
import { openNdpFile } from '../src/dataset/ndp-file.js';
import { parseJsonRecord } from '../src/dataset/record.js';
import { templateRenderer } from '../src/dataset/record-processor.js';
import { tokenizeRecord } from '../src/dataset/tokenize-record.js';
import { loadTokenizer, type TextTokenizer } from '../src/dataset/tokenizer.js';
import type { Sample } from '../src/dataset/sample.js';
import { report, type Row } from './report.js';

const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '4000' },
    'seq-len': { type: 'string', default: '512' },
    'batch-size': { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
  },
});
const SAMPLES = Number(values.samples);
const SEQ_LEN = Number(values['seq-len']);
const BATCH = Number(values['batch-size']);
const ROUNDS = Number(values.rounds);
const root = fileURLToPath(new URL('../..', import.meta.url));

/** Source text of the installed dependencies, cut into pieces of 400–2,400 characters (deterministic). */
async function corpus(count: number): Promise<string[]> {
  const lines: string[] = [];
  const files: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (files.length >= 4000 || depth > 6) return;
    let entries;
    try {
      entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    } catch {
      return;
    }
    for (const e of entries) {
      const path = join(dir, e.name);
      if (e.isDirectory() && !e.name.startsWith('.')) await walk(path, depth + 1);
      else if (e.isFile() && /\.(js|ts|md)$/.test(e.name) && !e.name.includes('.min.')) files.push(path);
    }
  };
  for (const dep of ['ws', 'undici', '@msgpack/msgpack', 'cli-progress', 'prom-client', 'fast-check', 'typescript/lib']) await walk(join(root, 'node_modules', dep), 0);
  let k = 0;
  // More passes over the same files, cut at other places, when one pass gives too few samples.
  for (let pass = 0; pass < 8 && lines.length < count; pass++) {
    for (const path of files) {
      if (lines.length >= count) break;
      if ((await stat(path)).size > 256 * 1024) continue;
      const text = await readFile(path, 'utf8');
      for (let at = pass * 211; at < text.length && lines.length < count; ) {
        const size = 400 + ((k * 7919) % 2000);
        const piece = text.slice(at, at + size);
        at += size;
        k++;
        // Half plain text, half prompt/completion (prompt not trained on), like the seed's coding set.
        if (k % 2 === 0) lines.push(JSON.stringify({ text: piece }));
        else lines.push(JSON.stringify({ prompt: `Continue this file:\n${piece.slice(0, piece.length >> 1)}`, completion: piece.slice(piece.length >> 1) }));
      }
    }
  }
  if (lines.length < count) throw new Error(`only ${lines.length} samples of source text found`);
  return lines;
}

interface Run {
  samples: number;
  tokens: number;
  seconds: number;
}

function batcher(padId: number): Batcher {
  return new Batcher({ batchSize: BATCH, seqLen: SEQ_LEN, padId });
}

/** Feeds samples to the batcher and touches each batch's arrays (what a trainer would hand on). */
function consume(b: Batcher, sample: Sample, sink: { checksum: number; tokens: number }): void {
  for (const batch of b.push(sample).batches) {
    sink.checksum = (sink.checksum + batch.inputIds[0]! + batch.labels[batch.labels.length - 1]!) | 0;
    sink.tokens += batch.tokenCount;
  }
}

async function traditional(jsonl: string, tokenizer: TextTokenizer): Promise<Run> {
  const started = performance.now();
  const text = await readFile(jsonl, 'utf8');
  const renderer = templateRenderer(tokenizer);
  const b = batcher(tokenizer.padTokenId);
  const sink = { checksum: 0, tokens: 0 };
  let index = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const { samples } = await tokenizeRecord(await parseJsonRecord(line, renderer), tokenizer, {});
    for (const s of samples) consume(b, { index: index++, src: s.src, tokens: s.tokens, lossMask: s.lossMask }, sink);
  }
  const last = b.flush();
  if (last !== undefined) sink.tokens += last.tokenCount;
  return { samples: index, tokens: sink.tokens, seconds: (performance.now() - started) / 1000 };
}

async function ndpStream(path: string, padId: number): Promise<Run> {
  const started = performance.now();
  const file = await openNdpFile(path, { cacheBytes: 0 });
  const b = batcher(padId);
  const sink = { checksum: 0, tokens: 0 };
  let n = 0;
  for await (const s of file.samples()) {
    consume(b, s, sink);
    n++;
  }
  const last = b.flush();
  if (last !== undefined) sink.tokens += last.tokenCount;
  await file.close();
  return { samples: n, tokens: sink.tokens, seconds: (performance.now() - started) / 1000 };
}

async function ndpRandom(path: string, padId: number): Promise<Run> {
  const started = performance.now();
  const file = await openNdpFile(path, { cacheBytes: 0 });
  const order = Array.from({ length: file.sampleCount }, (_, i) => i);
  let state = 12345;
  for (let i = order.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const b = batcher(padId);
  const sink = { checksum: 0, tokens: 0 };
  for (const i of order) consume(b, await file.read(i), sink);
  const last = b.flush();
  if (last !== undefined) sink.tokens += last.tokenCount;
  await file.close();
  return { samples: order.length, tokens: sink.tokens, seconds: (performance.now() - started) / 1000 };
}

async function median(fn: () => Promise<Run>): Promise<Run> {
  await fn(); // warm-up: JIT and the page cache, for every pipeline alike
  const runs: Run[] = [];
  for (let r = 0; r < ROUNDS; r++) runs.push(await fn());
  runs.sort((a, b) => a.seconds - b.seconds);
  return runs[Math.floor(runs.length / 2)]!;
}

const dir = await mkdtemp(join(tmpdir(), 'ndp-bench-data-'));
try {
  const jsonl = join(dir, 'corpus.jsonl');
  await writeFile(jsonl, (await corpus(SAMPLES)).join('\n') + '\n');
  const native = await loadTokenizer('qwen3', { engine: 'native' });
  const transformers = await loadTokenizer('qwen3', { engine: 'transformers' });

  const cores = availableParallelism();
  const convertRows: Row[] = [];
  let ndpPath = '';
  for (const workers of [1, cores]) {
    const out = join(dir, `corpus-${workers}.ndp`);
    const s = await convertToNdp([jsonl], out, { workers, engine: 'auto' });
    ndpPath = out;
    convertRows.push({
      'ndp convert': `${workers} worker${workers > 1 ? 's' : ''}`,
      samples: s.samples,
      tokens: s.tokens,
      seconds: s.seconds,
      'setup s': s.setupSeconds,
      'tokens/s': s.tokensPerSecond,
      'tokens/s after setup': s.tokensPerSecondAfterSetup,
      engine: s.engine,
    });
  }
  const ndpBytes = (await stat(ndpPath)).size;

  const runs: Array<[string, Run]> = [
    ['traditional JSONL (transformers.js)', await median(() => traditional(jsonl, transformers))],
    ['traditional JSONL (native tokenizers)', await median(() => traditional(jsonl, native))],
    ['.ndp streaming', await median(() => ndpStream(ndpPath, native.padTokenId))],
    ['.ndp random access (shuffled)', await median(() => ndpRandom(ndpPath, native.padTokenId))],
  ];
  const base = runs[0]![1];
  const rows: Row[] = runs.map(([pipeline, r]) => ({
    pipeline,
    samples: r.samples,
    'samples/s': r.samples / r.seconds,
    'tokens/s': r.tokens / r.seconds,
    'vs traditional (transformers.js)': `${((r.samples / r.seconds) / (base.samples / base.seconds)).toFixed(1)}×`,
  }));
  report('data-loading', rows, {
    samples: SAMPLES,
    seqLen: SEQ_LEN,
    batchSize: BATCH,
    rounds: ROUNDS,
    ndpBytes,
    jsonlBytes: (await stat(jsonl)).size,
    convert: convertRows,
    seed: { traditional: { samplesPerSecond: 799, tokensPerSecond: 90591 }, ndp: { samplesPerSecond: 2390, tokensPerSecond: 1221702 } },
    note: 'tokens/s counts real (non-padding) tokens in the batches built; median of rounds after a warm-up',
  }, `data loading: ${SAMPLES} samples, batches of ${BATCH}×${SEQ_LEN} (median of ${ROUNDS} rounds)`);
  process.stdout.write(`\nndp convert:\n`);
  for (const r of convertRows) {
    process.stdout.write(
      `  ${String(r['ndp convert']).padEnd(10)} ${Math.round(Number(r['tokens/s']))} tokens/s overall, ${Math.round(Number(r['tokens/s after setup']))} tokens/s after setup ` +
        `(${Number(r.seconds).toFixed(2)} s of which ${Number(r['setup s']).toFixed(2)} s loading the tokenizer and workers; ${r.tokens} tokens, engine ${r.engine})\n`,
    );
  }
  process.stdout.write(`seed (Python, RTX 3090 box): traditional 799 samples/s, 90,591 tokens/s; NDP 2,390 samples/s, 1,221,702 tokens/s\n`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
