/**
 * `ndp convert IN... OUT.ndp`: JSONL (plain or gzip) and source directories → one .ndp file
 * (src/dataset/convert.ts). Every skipped record is reported on stderr with its place and reason;
 * a summary always ends the run (stdout; `--json` prints it as JSON). Exit codes: 0 done (records
 * may have been skipped), 1 unreadable input, tokenizer failure or a bad record under
 * `--on-error fail` (no output is left), 2 bad usage.
 */
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { convertToNdp, type ConvertOptions, type ConvertSummary } from '../../dataset/convert.js';
import { DEFAULT_MAX_LINE_BYTES } from '../../dataset/input-reader.js';
import type { OverflowPolicy } from '../../dataset/tokenize-record.js';
import type { TokenizerEngine } from '../../dataset/tokenizer.js';
import { parseCode } from '../../protocol/registry.js';
import { intFlag } from '../int-flag.js';

export const usage = `usage: ndp convert IN... OUT.ndp [options]

Tokenizes JSONL records and source files into an .ndp file.
  IN: a .jsonl / .json / .gz (gzip JSONL) file, one record per line:
        {"text"}                        TEXT_CORPUS, every token trained on
        {"prompt","completion"}         INSTRUCTION, prompt not trained on, EOS appended
        {"messages":[{role,content}]}   CHAT via the tokenizer's chat template, only assistant turns trained on
        {"instruction","input","output"} INSTRUCTION, as a user/assistant conversation
      a directory: its source files matching --glob as CODE_REPO samples
      any other file: one CODE_REPO sample

options:
  --tokenizer qwen3|DIR   embedded Qwen3 tokenizer (default) or a Hugging Face tokenizer folder
  --engine auto|native|transformers  tokenizer engine (default auto: native if it matches transformers.js)
  --max-tokens N          longest sample (default 0: no limit)
  --overflow truncate|split|drop   what to do with longer samples (default truncate)
  --src NAME|CODE         SRC of every sample (default: by format)
  --dst NAME|CODE         DST of the sample frames (default EMBEDDING)
  --name NAME             dataset name (default: OUT's base name)
  --glob PATTERN          files taken from directory inputs (repeatable; default: common source files)
  --max-file-bytes N      larger source files are skipped (default 1048576)
  --max-line-bytes N      longer JSONL lines are skipped, never read whole (default 67108864 = 64 MiB)
  --on-error skip|fail    bad record: report and skip (default) or stop with no output
  --workers N             worker threads (default: all cores; 0 for inputs under 1 MiB)
  --json                  print the summary as JSON
  --quiet                 do not list skipped records (the summary still counts them)`;

function humanSummary(s: ConvertSummary): string {
  const lines = [
    `wrote ${s.out}: ${s.samples} samples, ${s.tokens} tokens (${s.trainedTokens} trained on), ${s.bytesOut} bytes`,
    `read ${s.records} records (${s.bytesIn} bytes of files); ${s.truncated} truncated, ${s.split} split; ${s.skipped} skipped`,
  ];
  for (const [code, n] of Object.entries(s.skippedByReason).sort()) lines.push(`  skipped ${String(n).padStart(8)}  ${code}`);
  lines.push(`${s.seconds.toFixed(2)} s, ${Math.round(s.samplesPerSecond)} samples/s, ${Math.round(s.tokensPerSecond)} tokens/s; ${s.workers} workers, ${s.engine} tokenizer ${s.tokenizer.name} (sha256 ${s.tokenizer.hash.slice(0, 12)}…)`);
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        tokenizer: { type: 'string' },
        engine: { type: 'string' },
        'max-tokens': { type: 'string' },
        overflow: { type: 'string' },
        src: { type: 'string' },
        dst: { type: 'string' },
        name: { type: 'string' },
        glob: { type: 'string', multiple: true },
        'max-file-bytes': { type: 'string' },
        'max-line-bytes': { type: 'string' },
        'on-error': { type: 'string' },
        workers: { type: 'string' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean' },
      },
    }));
  } catch (err) {
    process.stderr.write(`ndp convert: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }
  const out = positionals.pop();
  if (out === undefined || positionals.length === 0) {
    process.stderr.write(`ndp convert: needs at least one input and an output\n${usage}\n`);
    return 2;
  }
  let options: ConvertOptions;
  try {
    const overflow = values.overflow ?? 'truncate';
    if (!['truncate', 'split', 'drop'].includes(overflow)) throw new Error(`--overflow must be truncate, split or drop, got '${overflow}'`);
    const onError = values['on-error'] ?? 'skip';
    if (onError !== 'skip' && onError !== 'fail') throw new Error(`--on-error must be skip or fail, got '${onError}'`);
    const engine = values.engine ?? 'auto';
    if (!['auto', 'native', 'transformers'].includes(engine)) throw new Error(`--engine must be auto, native or transformers, got '${engine}'`);
    options = {
      tokenizer: values.tokenizer ?? 'qwen3',
      engine: engine as TokenizerEngine,
      maxTokens: intFlag('max-tokens', values['max-tokens']) ?? 0,
      overflow: overflow as OverflowPolicy,
      onError,
      ...(values.src !== undefined ? { src: parseCode('src', values.src) } : {}),
      ...(values.dst !== undefined ? { dst: parseCode('dst', values.dst) } : {}),
      ...(values.name !== undefined ? { name: values.name } : {}),
      ...(values.glob !== undefined ? { globs: values.glob } : {}),
      maxFileBytes: intFlag('max-file-bytes', values['max-file-bytes']) ?? 1024 * 1024,
      maxLineBytes: intFlag('max-line-bytes', values['max-line-bytes'], 1) ?? DEFAULT_MAX_LINE_BYTES,
      ...(values.workers !== undefined ? { workers: intFlag('workers', values.workers) } : {}),
    };
  } catch (err) {
    process.stderr.write(`ndp convert: ${(err as Error).message}\n`);
    return 2;
  }

  // A progress bar only where a person watches (a TTY); logs and CI get the summary alone.
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
        { format: 'convert [{bar}] {percentage}% | {samples} samples | {sps} samples/s | {tps} tokens/s', stream: process.stderr, hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const started = performance.now();
  let barStarted = false;
  try {
    const summary = await convertToNdp(positionals, out, options, {
      onSkip: (s) => {
        if (!values.quiet) {
          bar?.stop();
          barStarted = false;
          process.stderr.write(`skipped ${s.where}: ${s.code}: ${s.message}\n`);
        }
      },
      onProgress: (p) => {
        if (bar === undefined) return;
        const seconds = Math.max(1e-3, (performance.now() - started) / 1000);
        const payload = { samples: p.samples, sps: Math.round(p.samples / seconds), tps: Math.round(p.tokens / seconds) };
        if (!barStarted) {
          bar.start(Math.max(1, p.bytesTotal), Math.min(p.bytesDone, p.bytesTotal), payload);
          barStarted = true;
        } else {
          bar.update(Math.min(p.bytesDone, p.bytesTotal), payload);
        }
      },
    });
    bar?.stop();
    process.stdout.write((values.json ? JSON.stringify(summary) : humanSummary(summary)) + '\n');
    return 0;
  } catch (err) {
    bar?.stop();
    const e = err as { code?: string; message?: string };
    process.stderr.write(`ndp convert: ${e.code?.startsWith('NDP_ERR_') ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
    return 1;
  }
}
