/**
 * Shared helpers for benchmarks: measure a function, print a table, write the figures as JSON to
 * bench/results/<name>.json (so a closing note or a later run can compare).
 *
 * ```ts
 * import { measure, report } from './report.js';
 * const m = measure(() => { crc16(data); return data.length; }, { rounds: 5, minMs: 300 });
 * report('crc16', [{ impl: 'slicing-by-8', 'MB/s': m.median / 1e6 }], { note: 'payload 64 MiB' });
 * ```
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

export type Cell = string | number;
export type Row = Readonly<Record<string, Cell>>;

export interface Measurement {
  /** Units (bytes, frames, …) per second of wall-clock time: median, slowest and fastest round. */
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /**
   * Units per second of this process's CPU time (user + system), median of the rounds. On a shared,
   * loaded machine wall-clock rates fall with the load; CPU-time rates mostly do not (the process is
   * not charged while it waits for a core), so they are closer to what one idle core does.
   */
  readonly cpuMedian: number;
  readonly rounds: number;
}

export interface MeasureOptions {
  /** Timed rounds. Defaults to 5. */
  readonly rounds: number;
  /** Each round repeats `fn` until at least this long has passed. Defaults to 200 ms. */
  readonly minMs: number;
  /** Untimed calls first, so the JIT has compiled `fn`. Defaults to 1 round's worth (`minMs`). */
  readonly warmupMs: number;
}

/** Runs `fn` (which returns how many units it processed) and reports units per second. */
export function measure(fn: () => number, options: Readonly<Partial<MeasureOptions>> = {}): Measurement {
  const rounds = options.rounds ?? 5;
  const minMs = options.minMs ?? 200;
  const warmupMs = options.warmupMs ?? minMs;
  const warmEnd = performance.now() + warmupMs;
  while (performance.now() < warmEnd) fn();
  const rates: number[] = [];
  const cpuRates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let units = 0;
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    let elapsed = 0;
    do {
      units += fn();
      elapsed = performance.now() - start;
    } while (elapsed < minMs);
    const cpu = process.cpuUsage(cpuStart);
    rates.push(units / (elapsed / 1000));
    cpuRates.push(units / Math.max(1e-6, (cpu.user + cpu.system) / 1e6));
  }
  rates.sort((x, y) => x - y);
  cpuRates.sort((x, y) => x - y);
  const mid = Math.floor(rounds / 2);
  return { median: rates[mid]!, min: rates[0]!, max: rates.at(-1)!, cpuMedian: cpuRates[mid]!, rounds };
}

/** A number for a table: 3 significant digits, thousands kept readable. */
export function fmt(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return Number(value.toPrecision(3)).toString();
}

/** A Markdown table of `rows` (columns: the keys of the first row, unless given). */
export function formatTable(rows: readonly Row[], columns: readonly string[] = Object.keys(rows[0] ?? {})): string {
  const text = (c: Cell | undefined): string => (c === undefined ? '' : typeof c === 'number' ? fmt(c) : c);
  const widths = columns.map((col) => Math.max(col.length, ...rows.map((r) => text(r[col]).length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line([...columns]), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(columns.map((col) => text(r[col]))))].join('\n');
}

/** Where benchmark results go: <repo>/bench/results/ (resolved from dist/bench/ or bench/). */
export function resultsDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  return here.includes('/dist/') ? fileURLToPath(new URL('../../bench/results/', import.meta.url)) : fileURLToPath(new URL('./results/', import.meta.url));
}

/**
 * Prints `title` and the table of `rows`, and writes `{ name, date, node, cpu, meta, rows }` to
 * bench/results/<name>.json. Returns the JSON file's path.
 */
export function report(name: string, rows: readonly Row[], meta: Readonly<Record<string, unknown>> = {}, title = name): string {
  process.stdout.write(`\n${title}\n\n${formatTable(rows)}\n`);
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  const path = `${dir}${name}.json`;
  const cpu = cpus()[0]?.model ?? 'unknown';
  writeFileSync(path, JSON.stringify({ name, date: new Date().toISOString(), node: process.version, cpu, cores: cpus().length, meta, rows }, null, 2) + '\n');
  process.stdout.write(`\nwritten to ${path}\n`);
  return path;
}
