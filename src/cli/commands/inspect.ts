/**
 * `ndp inspect FILE`: what an .ndp file (or a legacy `.qubgpu` frame file) holds — header, counts,
 * token-length histogram, CRC status of every sample — as text or `--json`; `--samples` prints
 * samples as JSON lines; `--reindex` rebuilds a damaged file from its frames (NDP.md §10.4).
 * Packet captures (`.pcap`, `.pcapng`) go to the capture inspector (src/capture/inspect-pcap.ts).
 * Exit codes: 0 fine, 1 the file cannot be read or has corrupt samples, 2 bad usage.
 */
import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import { run as inspectCapture, usage as captureUsage } from '../../capture/inspect-pcap.js';
import { openNdpFile, type NdpFile } from '../../dataset/ndp-file.js';
import { reindexNdpFile } from '../../dataset/reindex.js';
import { loadTokenizer, type TextTokenizer } from '../../dataset/tokenizer.js';
import { codeName } from '../../protocol/registry.js';
import { intFlag } from '../int-flag.js';

// `ndp inspect FILE.pcap --help` prints this too (main.ts answers --help for every command): both halves.
export const usage = `usage: ndp inspect FILE.ndp|FILE.qubgpu [options]

Summarizes a sample file: header, tokenizer, counts, token-length histogram, CRC status of every
sample (reads the whole file once). A legacy .qubgpu file (v1 frames, no header) is indexed by
scanning and said to be legacy.

options:
  --json                 the summary as one JSON document
  --no-verify            summary from header and index only (no CRC pass over the samples)
  --samples              print samples as JSON lines {"index","src","tokens","loss_mask"}
    --from I             first sample (default 0)
    --count N            how many (default: all)
    --decode             add "text" (decoded with the embedded tokenizer, or --tokenizer DIR)
    --tokenizer qwen3|DIR
  --reindex              rebuild the file from its frames, keeping every intact sample
    --out FILE           write the rebuilt file there instead of replacing FILE

${captureUsage}

README 'Debugging with packet captures' shows captures in use.`;

/** Histogram buckets: token counts up to 1, 2, 4, … (powers of two). */
function bucketOf(tokens: number): number {
  return tokens <= 1 ? 1 : 2 ** Math.ceil(Math.log2(tokens));
}

interface Summary {
  file: string;
  format: 'ndp' | 'legacy';
  legacy: boolean;
  legacyNote?: string;
  name: string;
  src: string;
  dst: string;
  tokenizer: { name: string; hash: string; vocabSize: number };
  samples: number;
  tokens: number;
  bytes: number;
  tokensPerSample: { min: number; mean: number; max: number };
  histogram: Array<{ upTo: number; samples: number }>;
  crc?: { checked: number; intact: number; dropped: Record<string, number>; trainedTokens: number; bySrc: Record<string, number> };
}

async function summarize(file: NdpFile, verify: boolean): Promise<Summary> {
  const buckets = new Map<number, number>();
  let min = Infinity;
  let max = 0;
  for await (const n of file.tokenCounts()) {
    buckets.set(bucketOf(n), (buckets.get(bucketOf(n)) ?? 0) + 1);
    if (n < min) min = n;
    if (n > max) max = n;
  }
  const summary: Summary = {
    file: file.path,
    format: file.format,
    legacy: file.legacy,
    name: file.name,
    src: codeName('src', file.src),
    dst: codeName('dst', file.dst),
    tokenizer: { ...file.tokenizer },
    samples: file.sampleCount,
    tokens: file.tokenCount,
    bytes: file.sizeBytes,
    tokensPerSample: { min: file.sampleCount === 0 ? 0 : min, mean: file.sampleCount === 0 ? 0 : file.tokenCount / file.sampleCount, max },
    histogram: [...buckets].sort((a, b) => a[0] - b[0]).map(([upTo, samples]) => ({ upTo, samples })),
  };
  if (file.legacy) {
    summary.legacyNote = `legacy frame file (no header, no index): index built by scanning; tokenizer unknown; every token trained on; ${file.legacyIgnoredFrames} non-TOKEN_IDS frames ignored`;
  }
  if (verify) {
    let intact = 0;
    let trainedTokens = 0;
    const bySrc: Record<string, number> = {};
    for await (const s of file.samples()) {
      intact++;
      for (const m of s.lossMask) trainedTokens += m;
      const name = codeName('src', s.src);
      bySrc[name] = (bySrc[name] ?? 0) + 1;
    }
    summary.crc = { checked: file.sampleCount, intact, dropped: file.stats().dropped, trainedTokens, bySrc };
  }
  return summary;
}

function human(s: Summary): string {
  const lines = [
    `${s.file}`,
    `  format      ${s.legacy ? s.legacyNote : '.ndp v1'}`,
    `  dataset     ${s.name}   default SRC ${s.src}, DST ${s.dst}`,
    `  tokenizer   ${s.tokenizer.name}, vocab ${s.tokenizer.vocabSize}, sha256 ${s.tokenizer.hash || '(unknown)'}`,
    `  samples     ${s.samples}`,
    `  tokens      ${s.tokens} (per sample min ${s.tokensPerSample.min}, mean ${s.tokensPerSample.mean.toFixed(1)}, max ${s.tokensPerSample.max})`,
    `  bytes       ${s.bytes}`,
    `  token-length histogram:`,
  ];
  const widest = Math.max(1, ...s.histogram.map((h) => h.samples));
  for (const h of s.histogram) lines.push(`    ≤${String(h.upTo).padStart(7)} ${String(h.samples).padStart(9)} ${'#'.repeat(Math.ceil((40 * h.samples) / widest))}`);
  if (s.crc !== undefined) {
    const dropped = Object.entries(s.crc.dropped);
    lines.push(`  trained on  ${s.crc.trainedTokens} tokens; samples by SRC: ${Object.entries(s.crc.bySrc).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
    lines.push(
      dropped.length === 0
        ? `  CRC         all ${s.crc.intact} samples intact (CRC-16 of every frame, CRC-32 of every body)`
        : `  CRC         ${s.crc.checked - s.crc.intact} of ${s.crc.checked} samples corrupt: ${dropped.map(([k, v]) => `${k} ${v}`).join(', ')} (ndp inspect --reindex keeps the intact ones)`,
    );
  } else {
    lines.push('  CRC         not checked (--no-verify)');
  }
  return lines.join('\n');
}

async function printSamples(file: NdpFile, from: number, count: number | undefined, tokenizer: TextTokenizer | undefined): Promise<void> {
  const to = count === undefined ? file.sampleCount : Math.min(file.sampleCount, from + count);
  for await (const s of file.samples({ from, to })) {
    const line: Record<string, unknown> = { index: s.index, src: codeName('src', s.src), tokens: Array.from(s.tokens), loss_mask: Array.from(s.lossMask) };
    if (tokenizer !== undefined) line.text = await tokenizer.decode(s.tokens);
    if (!process.stdout.write(JSON.stringify(line) + '\n')) await new Promise((resolve) => process.stdout.once('drain', resolve));
  }
}

export async function run(argv: string[]): Promise<number> {
  const target = argv.find((a) => !a.startsWith('-'));
  if (target !== undefined && /^\.pcap(ng)?$/i.test(extname(target))) return inspectCapture(argv);
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        'no-verify': { type: 'boolean' },
        samples: { type: 'boolean' },
        from: { type: 'string' },
        count: { type: 'string' },
        decode: { type: 'boolean' },
        tokenizer: { type: 'string' },
        reindex: { type: 'boolean' },
        out: { type: 'string' },
      },
    }));
  } catch (err) {
    process.stderr.write(`ndp inspect: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }
  const path = positionals[0];
  if (path === undefined || positionals.length > 1) {
    process.stderr.write(`ndp inspect: needs exactly one file\n${usage}\n`);
    return 2;
  }
  let from: number;
  let count: number | undefined;
  try {
    from = intFlag('from', values.from) ?? 0;
    count = intFlag('count', values.count);
  } catch (err) {
    process.stderr.write(`ndp inspect: ${(err as Error).message}\n`);
    return 2;
  }
  const fail = (err: unknown): number => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`ndp inspect: ${e.code?.startsWith('NDP_ERR_') ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
    return 1;
  };

  if (values.reindex) {
    try {
      const result = await reindexNdpFile(path, values.out !== undefined ? { out: values.out } : {});
      if (values.json) {
        process.stdout.write(JSON.stringify(result) + '\n');
      } else {
        const dropped = Object.entries(result.dropped);
        process.stdout.write(
          `reindexed ${path} (${result.source}) → ${result.out}: kept ${result.kept} samples, ${result.tokens} tokens` +
            (result.announced !== undefined ? ` (header announced ${result.announced})` : '') +
            `\n  not kept: ${dropped.length === 0 ? 'nothing' : dropped.map(([k, v]) => `${k} ${v}`).join(', ')}\n`,
        );
      }
      return 0;
    } catch (err) {
      return fail(err);
    }
  }

  let file: NdpFile;
  try {
    file = await openNdpFile(path);
  } catch (err) {
    return fail(err);
  }
  try {
    if (values.samples) {
      const tokenizer = values.decode ? await loadTokenizer(values.tokenizer ?? 'qwen3', { engine: 'transformers' }) : undefined;
      await printSamples(file, from, count, tokenizer);
      const dropped = Object.entries(file.stats().dropped);
      if (dropped.length > 0) process.stderr.write(`ndp inspect: corrupt samples left out: ${dropped.map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
      return dropped.length > 0 ? 1 : 0;
    }
    const summary = await summarize(file, !values['no-verify']);
    process.stdout.write((values.json ? JSON.stringify(summary) : human(summary)) + '\n');
    return summary.crc !== undefined && summary.crc.intact < summary.crc.checked ? 1 : 0;
  } catch (err) {
    return fail(err);
  } finally {
    await file.close();
  }
}
