/**
 * The quick start's data, built at run time from what every install has: nothing is downloaded and
 * nothing large lives in the repository.
 *
 * - **Synthetic task** (SRC SYNTHETIC), train and held-out eval splits (no eval cycle occurs in train): a cycle of 2–4 words drawn
 *   from 16 is shown twice (`pattern: red fox blue …` — the prompt, not trained on), and the
 *   completion continues it for three more cycles. Continuing a pattern is learnable by copying
 *   (attention), so loss on the held-out split falls measurably within minutes of LoRA training;
 *   an untrained model is at chance over the 16 words.
 * - **Source code** (SRC CODE_REPO, train split only): JavaScript/TypeScript files of the packages
 *   ndp itself depends on (its package.json, so every install has them), chosen deterministically
 *   (packages and files in name order, a few files per package, size-capped).
 *
 * Same options and tokenizer → byte-identical files. A manifest next to the files lets a second call
 * reuse them without tokenizing.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DST, SRC } from '../protocol/registry.js';
import { seededRandom } from '../seeded-random.js';
import { NdpFileWriter } from './ndp-file-writer.js';
import { openNdpFile } from './ndp-file.js';
import { sourceFileRecord, type ParsedRecord } from './record.js';
import { tokenizeRecord } from './tokenize-record.js';
import { EMBEDDED_TOKENIZER, embeddedTokenizerDir, loadTokenizer, type TextTokenizer } from './tokenizer.js';

export interface DemoDataOptions {
  /** Synthetic training samples. Defaults to 2000. */
  readonly trainSamples?: number;
  /** Held-out synthetic samples (the eval split). Defaults to 200. */
  readonly evalSamples?: number;
  /** Source files taken from the dependencies (0 = none). Defaults to 200. */
  readonly codeFiles?: number;
  /** Bytes of source taken in all. Defaults to 1 MiB. */
  readonly codeBytes?: number;
  /** Longest sample in tokens; longer source files are split. Defaults to 256. */
  readonly maxTokens?: number;
  /** Seed of the synthetic task (the eval split uses seed + 1). Defaults to 1. */
  readonly seed?: number;
  /** The repository root whose package.json and node_modules are read. Defaults to this package's root. */
  readonly packageRoot?: string;
}

export interface DemoData {
  readonly train: string;
  readonly eval: string;
  readonly manifest: string;
  readonly trainSamples: number;
  readonly evalSamples: number;
  readonly trainTokens: number;
  readonly evalTokens: number;
  readonly codeFiles: number;
  /** True when existing files matching the options were reused. */
  readonly reused: boolean;
  readonly seconds: number;
}

/** The words of the synthetic task; each is one Qwen3 token with its leading space. */
export const DEMO_WORDS: readonly string[] = ['red', 'blue', 'green', 'gold', 'fox', 'owl', 'cat', 'dog', 'sun', 'moon', 'star', 'rain', 'one', 'two', 'six', 'ten'];
/** Bumped whenever the builder's output changes, so old manifests are not reused. */
const DEMO_VERSION = 1;
const SOURCE_FILE = /\.(js|mjs|cjs|ts)$/;

/** One sample of the synthetic task, and its cycle (what makes two samples the same). */
export function patternRecord(next: () => number): { record: ParsedRecord; cycle: string } {
  const period = 2 + Math.floor(next() * 3);
  const words = Array.from({ length: period }, () => DEMO_WORDS[Math.floor(next() * DEMO_WORDS.length)]!);
  const shown = [...words, ...words].join(' ');
  const continued = [...words, ...words, ...words].join(' ');
  return {
    record: { src: SRC.SYNTHETIC, pieces: [{ text: `pattern: ${shown}`, trained: false }, { text: ` ${continued}.`, trained: true }], appendEos: false },
    cycle: words.join(' '),
  };
}

const defaultRoot = (): string => fileURLToPath(new URL('../../..', import.meta.url));

/** Source files of the dependencies named in `packageRoot/package.json`, chosen deterministically. */
async function dependencySources(packageRoot: string, maxFiles: number, maxBytes: number): Promise<Array<{ path: string; text: string }>> {
  const pkg = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
  const names = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.devDependencies ?? {})].sort();
  const perPackage = Math.max(1, Math.ceil(maxFiles / Math.max(1, names.length)));
  const out: Array<{ path: string; text: string }> = [];
  let bytes = 0;
  const walk = async (dir: string, found: string[]): Promise<void> => {
    let entries;
    try {
      entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    } catch {
      return;
    }
    for (const entry of entries) {
      if (found.length >= perPackage) return;
      const path = join(dir, entry.name);
      if (entry.isDirectory() && entry.name !== 'node_modules' && !entry.name.startsWith('.')) await walk(path, found);
      else if (entry.isFile() && SOURCE_FILE.test(entry.name) && !entry.name.includes('.min.') && !entry.name.endsWith('.d.ts')) {
        const size = (await stat(path)).size;
        if (size >= 512 && size <= 16384) found.push(path);
      }
    }
  };
  for (const name of names) {
    const found: string[] = [];
    await walk(join(packageRoot, 'node_modules', name), found);
    for (const path of found) {
      if (out.length >= maxFiles || bytes >= maxBytes) return out;
      const text = await readFile(path, 'utf8');
      // Bundled or minified code (very long lines) teaches little and tokenizes poorly.
      if (text.includes('\0') || text.length / Math.max(1, text.split('\n').length) > 200) continue;
      out.push({ path, text });
      bytes += text.length;
    }
  }
  return out;
}

async function loadFastTokenizer(): Promise<TextTokenizer> {
  // The native engine alone loads in ~2 s; transformers.js is the fallback where it does not load.
  try {
    return await loadTokenizer(EMBEDDED_TOKENIZER, { engine: 'native' });
  } catch {
    return loadTokenizer(EMBEDDED_TOKENIZER, { engine: 'transformers' });
  }
}

/**
 * Builds (or reuses) the demo corpus in `dir`: `demo-train.ndp` (synthetic task + dependency
 * sources), `demo-eval.ndp` (held-out synthetic samples, DST EVAL) and `demo-manifest.json`.
 */
export async function buildDemoData(dir: string, options: DemoDataOptions = {}): Promise<DemoData> {
  const started = performance.now();
  const settings = {
    version: DEMO_VERSION,
    trainSamples: options.trainSamples ?? 2000,
    evalSamples: options.evalSamples ?? 200,
    codeFiles: options.codeFiles ?? 200,
    codeBytes: options.codeBytes ?? 1024 * 1024,
    maxTokens: options.maxTokens ?? 256,
    seed: options.seed ?? 1,
    tokenizerHash: createHash('sha256').update(await readFile(join(embeddedTokenizerDir(), 'tokenizer.json'))).digest('hex'),
  };
  const packageRoot = options.packageRoot ?? defaultRoot();
  await mkdir(dir, { recursive: true });
  const train = join(dir, 'demo-train.ndp');
  const evalPath = join(dir, 'demo-eval.ndp');
  const manifest = join(dir, 'demo-manifest.json');

  const reused = await readFile(manifest, 'utf8').then(
    async (text) => {
      const old = JSON.parse(text) as { settings: unknown; result: Omit<DemoData, 'reused' | 'seconds' | 'train' | 'eval' | 'manifest'> };
      if (JSON.stringify(old.settings) !== JSON.stringify(settings)) return undefined;
      for (const path of [train, evalPath]) await (await openNdpFile(path)).close();
      return old.result;
    },
    () => undefined,
  ).catch(() => undefined);
  if (reused !== undefined) return { ...reused, train, eval: evalPath, manifest, reused: true, seconds: (performance.now() - started) / 1000 };

  const tokenizer = await loadFastTokenizer();
  const tokenize = { maxTokens: settings.maxTokens, overflow: 'split' as const };

  // Built under temporary names and renamed at the end: a concurrent reader never sees half a file.
  const suffix = `.building-${process.pid}`;
  const trainWriter = await NdpFileWriter.create(train + suffix, { name: 'demo-train', tokenizer: tokenizer.identity, src: SRC.SYNTHETIC });
  const nextTrain = seededRandom(settings.seed);
  const seen = new Set<string>();
  for (let i = 0; i < settings.trainSamples; i++) {
    const { record, cycle } = patternRecord(nextTrain);
    seen.add(cycle);
    for (const s of (await tokenizeRecord(record, tokenizer, tokenize)).samples) await trainWriter.append(s);
  }
  const sources = settings.codeFiles > 0 ? await dependencySources(packageRoot, settings.codeFiles, settings.codeBytes) : [];
  for (const source of sources) {
    for (const s of (await tokenizeRecord(sourceFileRecord(source.text), tokenizer, tokenize)).samples) await trainWriter.append(s);
  }
  const trainDone = await trainWriter.finish();

  const evalWriter = await NdpFileWriter.create(evalPath + suffix, { name: 'demo-eval', tokenizer: tokenizer.identity, src: SRC.SYNTHETIC, dst: DST.EVAL });
  const nextEval = seededRandom(settings.seed + 1);
  // Held out for real: an eval cycle never occurs in the train split (short cycles mostly do, so
  // the eval split leans to periods 3 and 4). The attempt cap only matters for tiny vocabularies.
  for (let kept = 0, tries = 0; kept < settings.evalSamples && tries < 1000 * settings.evalSamples; tries++) {
    const { record, cycle } = patternRecord(nextEval);
    if (seen.has(cycle)) continue;
    seen.add(cycle);
    kept++;
    for (const s of (await tokenizeRecord(record, tokenizer, tokenize)).samples) await evalWriter.append(s);
  }
  const evalDone = await evalWriter.finish();

  const result = {
    trainSamples: trainDone.sampleCount,
    evalSamples: evalDone.sampleCount,
    trainTokens: trainDone.tokenCount,
    evalTokens: evalDone.tokenCount,
    codeFiles: sources.length,
  };
  await rename(train + suffix, train);
  await rename(evalPath + suffix, evalPath);
  await writeFile(manifest + suffix, JSON.stringify({ settings, result }, null, 2) + '\n');
  await rename(manifest + suffix, manifest);
  return { ...result, train, eval: evalPath, manifest, reused: false, seconds: (performance.now() - started) / 1000 };
}
