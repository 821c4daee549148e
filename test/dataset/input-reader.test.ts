import t from 'tap';
import { execFile } from 'node:child_process';
import { access, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { boundedLines, type BoundedLine } from '../../src/dataset/bounded-lines.js';
import { readInputs, type InputRecord } from '../../src/dataset/input-reader.js';
import { tempDir } from '../temp-dir.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const cli = join(root, 'dist/src/cli/main.js');
const dir = tempDir(t, 'ndp-input-reader-');

function ndp(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd: dir }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** The bytes of `text` cut into chunks of `size` bytes, as a stream would hand them over. */
async function* chunked(text: string, size: number): AsyncGenerator<Buffer> {
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

const MAX = 40;
/** A JSONL line of exactly `bytes` bytes. */
const lineOf = (bytes: number): string => {
  const line = JSON.stringify({ text: 'x'.repeat(bytes - 11) });
  if (Buffer.byteLength(line) !== bytes) throw new Error('bad fixture');
  return line;
};

t.test('boundedLines: a line of exactly the limit is kept, one byte more is skipped, at every chunk size', async (t) => {
  const input = ['short', 'a'.repeat(MAX), 'b'.repeat(MAX + 1), 'c'.repeat(MAX) + '\r', 'd'.repeat(MAX + 1) + '\r', '', 'é'.repeat(20), 'tail'].join('\n');
  for (const size of [1, 3, 7, 40, 41, 42, 1000]) {
    const lines: BoundedLine[] = await collect(boundedLines(chunked(input, size), MAX));
    t.same(
      lines.map((l) => (l.tooLong ? { n: l.lineNumber, tooLong: l.lineBytes, bytes: l.bytes } : { n: l.lineNumber, text: l.text, bytes: l.bytes })),
      [
        { n: 1, text: 'short', bytes: 6 },
        { n: 2, text: 'a'.repeat(MAX), bytes: MAX + 1 },
        { n: 3, tooLong: MAX + 1, bytes: MAX + 2 },
        { n: 4, text: 'c'.repeat(MAX), bytes: MAX + 2 },
        { n: 5, tooLong: MAX + 1, bytes: MAX + 3 },
        { n: 6, text: '', bytes: 1 },
        { n: 7, text: 'é'.repeat(20), bytes: MAX + 1 },
        { n: 8, text: 'tail', bytes: 4 },
      ],
      `chunks of ${size} bytes`,
    );
  }
  await t.rejects(collect(boundedLines(chunked('x', 1), 0)), RangeError);
});

t.test('boundedLines: a line far over the limit is streamed past without being held', async (t) => {
  // 64 MiB of one line in 64 KiB chunks: were it buffered, heap use would grow by at least that much.
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  async function* huge(): AsyncGenerator<Buffer> {
    for (let i = 0; i < 1024; i++) yield chunk;
    yield Buffer.from('\n{"text":"after"}\n');
  }
  const before = process.memoryUsage().arrayBuffers;
  let peak = before;
  const lines: BoundedLine[] = [];
  for await (const line of boundedLines(huge(), 1024)) {
    lines.push(line);
    peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  }
  t.equal(lines.length, 2);
  t.match(lines[0], { lineNumber: 1, tooLong: true, lineBytes: 64 * 1024 * 1024 });
  t.match(lines[1], { lineNumber: 2, text: '{"text":"after"}' });
  t.ok(peak - before < 16 * 1024 * 1024, `array buffers grew by ${peak - before} bytes while reading a 64 MiB line`);
});

t.test('readInputs: --max-line-bytes on a real plain and gzip file', async (t) => {
  const text = [lineOf(MAX), lineOf(MAX + 1), '', lineOf(MAX - 1)].join('\n') + '\n';
  await writeFile(join(dir, 'limit.jsonl'), text);
  await writeFile(join(dir, 'limit.jsonl.gz'), gzipSync(text));
  for (const name of ['limit.jsonl', 'limit.jsonl.gz']) {
    const path = join(dir, name);
    const records: InputRecord[] = await collect(readInputs([path], { maxLineBytes: MAX }));
    t.same(
      records.map((r) => ({ where: r.where, text: r.text, skip: r.skip?.code, bytes: r.bytes })),
      [
        { where: `${path}:1`, text: lineOf(MAX), skip: undefined, bytes: MAX + 1 },
        { where: `${path}:2`, text: '', skip: 'NDP_ERR_INPUT_LINE_TOO_LONG', bytes: MAX + 2 },
        { where: `${path}:4`, text: lineOf(MAX - 1), skip: undefined, bytes: MAX },
      ],
      name,
    );
    t.match(records[1]!.skip!.message, `line of ${MAX + 1} bytes, more than --max-line-bytes ${MAX}`);
  }
  const defaults = await collect(readInputs([join(dir, 'limit.jsonl')]));
  t.equal(defaults.filter((r) => r.skip !== undefined).length, 0, 'the 64 MiB default takes these lines');
  await t.rejects(collect(readInputs([join(dir, 'limit.jsonl')], { maxLineBytes: 0 })), RangeError);
});

t.test('ndp convert --max-line-bytes: skipped and counted, --on-error fail stops with no output', async (t) => {
  await writeFile(join(dir, 'cli.jsonl'), [lineOf(MAX), lineOf(MAX + 1), lineOf(MAX)].join('\n') + '\n');
  const r = await ndp(['convert', 'cli.jsonl', 'cli.ndp', '--max-line-bytes', String(MAX), '--workers', '0', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /cli\.jsonl:2: NDP_ERR_INPUT_LINE_TOO_LONG/);
  const summary = JSON.parse(r.stdout) as { samples: number; records: number; skipped: number; skippedByReason: Record<string, number> };
  t.equal(summary.samples, 2);
  t.equal(summary.records, 3);
  t.same(summary.skippedByReason, { NDP_ERR_INPUT_LINE_TOO_LONG: 1 });

  const failed = await ndp(['convert', 'cli.jsonl', 'fail.ndp', '--max-line-bytes', String(MAX), '--on-error', 'fail', '--workers', '0']);
  t.equal(failed.code, 1);
  t.match(failed.stderr, /NDP_ERR_INPUT_LINE_TOO_LONG: .*cli\.jsonl:2/);
  t.notOk(await access(join(dir, 'fail.ndp')).then(() => true, () => false));

  const bad = await ndp(['convert', 'cli.jsonl', 'bad.ndp', '--max-line-bytes', '0']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--max-line-bytes must be an integer ≥ 1/);
});
