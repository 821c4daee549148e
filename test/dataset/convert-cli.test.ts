import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { openNdpFile } from '../../src/dataset/ndp-file.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { DST, SRC, TYP } from '../../src/protocol/registry.js';
import { writeDataset } from '../client/fixtures.js';
import { tempDir } from '../temp-dir.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const cli = join(root, 'dist/src/cli/main.js');
const dir = tempDir(t, 'ndp-convert-');

function ndp(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { cwd: dir, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

const lines = [
  JSON.stringify({ text: 'Plain text is trained on entirely.' }),
  JSON.stringify({ prompt: 'Q: 2+2?\nA:', completion: ' 4' }),
  'this line is not JSON',
  JSON.stringify({ messages: [{ role: 'user', content: 'Say hi' }, { role: 'assistant', content: 'Hi!' }] }),
  '',
  JSON.stringify({ instruction: 'Add', input: '3 and 5', output: '8' }),
  JSON.stringify({ unknown: 1 }),
  JSON.stringify({ text: '' }),
  JSON.stringify({ messages: [{ role: 'user', content: 'no answer' }] }),
];
await writeFile(join(dir, 'mixed.jsonl'), lines.join('\n') + '\n');
await writeFile(join(dir, 'more.jsonl.gz'), gzipSync(JSON.stringify({ text: 'from a gzip file' }) + '\n'));
await mkdir(join(dir, 'repo/src'), { recursive: true });
await mkdir(join(dir, 'repo/node_modules/dep'), { recursive: true });
await writeFile(join(dir, 'repo/src/b.ts'), 'export const b = 2;\n');
await writeFile(join(dir, 'repo/src/a.ts'), 'export const a = 1;\n');
await writeFile(join(dir, 'repo/README.md'), '# Repo\n');
await writeFile(join(dir, 'repo/src/blob.ts'), Buffer.from([0x65, 0x00, 0x66]));
await writeFile(join(dir, 'repo/node_modules/dep/index.ts'), 'never taken\n');

t.test('formats, loss masks, SRC codes, skipped lines with line numbers and reasons', async (t) => {
  const r = await ndp(['convert', 'mixed.jsonl', 'more.jsonl.gz', 'out.ndp', '--workers', '0', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /mixed\.jsonl:3: NDP_ERR_INPUT_BAD_JSON/);
  t.match(r.stderr, /mixed\.jsonl:7: NDP_ERR_INPUT_UNKNOWN_FORMAT/);
  t.match(r.stderr, /mixed\.jsonl:8: NDP_ERR_INPUT_EMPTY/);
  t.match(r.stderr, /mixed\.jsonl:9: NDP_ERR_INPUT_EMPTY/);
  const summary = JSON.parse(r.stdout) as { samples: number; skipped: number; skippedByReason: Record<string, number>; records: number };
  t.equal(summary.samples, 5);
  t.equal(summary.records, 9, 'blank line is not a record');
  t.same(summary.skippedByReason, { NDP_ERR_INPUT_BAD_JSON: 1, NDP_ERR_INPUT_UNKNOWN_FORMAT: 1, NDP_ERR_INPUT_EMPTY: 2 });

  const s = await ndp(['inspect', 'out.ndp', '--samples', '--decode']);
  t.equal(s.code, 0, s.stderr);
  const samples = s.stdout.trim().split('\n').map((l) => JSON.parse(l) as { index: number; src: string; tokens: number[]; loss_mask: number[]; text: string });
  t.same(samples.map((x) => x.src), ['TEXT_CORPUS', 'INSTRUCTION', 'CHAT', 'INSTRUCTION', 'TEXT_CORPUS']);
  t.ok(samples[0]!.loss_mask.every((m) => m === 1), 'plain text: every token trained on');
  t.equal(samples[0]!.text, 'Plain text is trained on entirely.');
  const prompt = samples[1]!;
  t.equal(prompt.text, 'Q: 2+2?\nA: 4<|im_end|>', 'prompt + completion + EOS');
  const firstTrained = prompt.loss_mask.indexOf(1);
  t.ok(firstTrained > 0 && prompt.loss_mask.slice(firstTrained).every((m) => m === 1), 'prompt 0, completion and EOS 1');
  const chat = samples[2]!;
  t.match(chat.text, /^<\|im_start\|>user\nSay hi<\|im_end\|>\n<\|im_start\|>assistant\n/);
  const trainedIds = chat.tokens.filter((_, i) => chat.loss_mask[i] === 1);
  t.ok(trainedIds.length >= 2 && trainedIds.length < chat.tokens.length / 2, 'only the assistant turn is trained on');
  t.equal(trainedIds[trainedIds.length - 1], 151645, 'the end-of-turn token is trained on');
  t.equal(samples[4]!.text, 'from a gzip file');

  const info = await ndp(['inspect', 'out.ndp', '--json']);
  const parsed = JSON.parse(info.stdout) as { samples: number; crc: { intact: number }; tokenizer: { vocabSize: number } };
  t.equal(parsed.samples, 5);
  t.equal(parsed.crc.intact, 5);
  t.equal(parsed.tokenizer.vocabSize, 151669);
});

// Tests other than the first name --engine native: the auto engine's probe is covered by the first
// test and test/dataset/tokenizer.test.ts, and each child process saves loading transformers.js.
t.test('directories with --glob become CODE_REPO samples in path order; binary and oversized files are skipped', async (t) => {
  const r = await ndp(['convert', 'repo', 'code.ndp', '--glob', '**/*.ts', '--workers', '0', '--engine', 'native', '--max-file-bytes', '20', '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /blob\.ts: NDP_ERR_INPUT_BINARY/);
  const file = await openNdpFile(join(dir, 'code.ndp'));
  t.equal(file.sampleCount, 2, 'a.ts and b.ts; README.md not matched, node_modules never walked');
  t.equal(file.src, SRC.CODE_REPO);
  t.equal((await file.read(0)).tokens.length < (await file.read(1)).tokens.length + 5, true);
  await file.close();
  const text = await ndp(['inspect', 'code.ndp', '--samples', '--decode']);
  t.same(text.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { text: string }).text), ['export const a = 1;\n', 'export const b = 2;\n']);
  // 'export const a = 1;\n' is 20 bytes: at the limit it is kept, one byte below it is skipped.
  const tight = await ndp(['convert', 'repo', 'tight.ndp', '--glob', 'src/a.ts', '--workers', '0', '--engine', 'native', '--max-file-bytes', '19', '--json']);
  t.match(tight.stderr, /a\.ts: NDP_ERR_INPUT_TOO_LARGE/);
  t.equal((JSON.parse(tight.stdout) as { samples: number }).samples, 0);
});

t.test('--max-tokens with truncate, split and drop', async (t) => {
  const long = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ');
  await writeFile(join(dir, 'long.jsonl'), JSON.stringify({ text: long }) + '\n' + JSON.stringify({ text: 'short' }) + '\n');
  const results: Record<string, { samples: number; truncated: number; split: number; skippedByReason: Record<string, number> }> = {};
  for (const overflow of ['truncate', 'split', 'drop']) {
    const r = await ndp(['convert', 'long.jsonl', `long-${overflow}.ndp`, '--max-tokens', '16', '--overflow', overflow, '--workers', '0', '--engine', 'native', '--json']);
    t.equal(r.code, 0, r.stderr);
    results[overflow] = JSON.parse(r.stdout);
  }
  t.equal(results.truncate!.samples, 2);
  t.equal(results.truncate!.truncated, 1);
  t.ok(results.split!.samples > 3);
  t.equal(results.split!.split, 1);
  t.equal(results.drop!.samples, 1);
  t.same(results.drop!.skippedByReason, { NDP_ERR_SAMPLE_OVERFLOW: 1 });
  const file = await openNdpFile(join(dir, 'long-split.ndp'));
  for (let i = 0; i < file.sampleCount; i++) t.ok((await file.read(i)).tokens.length <= 16, `sample ${i} within the limit`);
  await file.close();
});

t.test('--on-error fail and unreadable inputs exit non-zero and leave no output', async (t) => {
  const failed = await ndp(['convert', 'mixed.jsonl', 'fail.ndp', '--on-error', 'fail', '--workers', '0']);
  t.equal(failed.code, 1);
  t.match(failed.stderr, /NDP_ERR_INPUT_BAD_JSON: .*mixed\.jsonl:3/);
  t.notOk(await exists(join(dir, 'fail.ndp')));
  const missing = await ndp(['convert', 'nope.jsonl', 'missing.ndp']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /NDP_ERR_INPUT_UNREADABLE/);
  await writeFile(join(dir, 'broken.jsonl.gz'), gzipSync('{"text": "a"}\n').subarray(0, 12));
  const broken = await ndp(['convert', 'broken.jsonl.gz', 'broken.ndp', '--workers', '0', '--engine', 'native']);
  t.equal(broken.code, 1);
  t.match(broken.stderr, /NDP_ERR_INPUT_UNREADABLE/);
  t.notOk(await exists(join(dir, 'broken.ndp')));
  const usage = await ndp(['convert', 'only-one-arg.ndp']);
  t.equal(usage.code, 2);
  const badWorkers = await ndp(['convert', 'mixed.jsonl', 'w.ndp', '--workers', '1.5']);
  t.equal(badWorkers.code, 2);
  t.match(badWorkers.stderr, /--workers must be an integer ≥ 0, got '1\.5'/);
  const badCount = await ndp(['inspect', 'w.ndp', '--samples', '--count=-1']);
  t.equal(badCount.code, 2);
  t.match(badCount.stderr, /--count must be an integer ≥ 0, got '-1'/);
});

t.test('worker threads give a byte-identical file', async (t) => {
  const many = Array.from({ length: 300 }, (_, i) => JSON.stringify(i % 2 ? { text: `sample ${i} ${'x'.repeat(i % 37)}` } : { prompt: `p${i}`, completion: ` c${i}` })).join('\n');
  await writeFile(join(dir, 'many.jsonl'), many + '\n');
  await mkdir(join(dir, 'w0'));
  await mkdir(join(dir, 'w2'));
  const a = await ndp(['convert', 'many.jsonl', 'w0/many.ndp', '--workers', '0', '--engine', 'native', '--json']);
  const b = await ndp(['convert', 'many.jsonl', 'w2/many.ndp', '--workers', '2', '--engine', 'native', '--json']);
  t.equal(a.code, 0, a.stderr);
  t.equal(b.code, 0, b.stderr);
  t.equal((JSON.parse(b.stdout) as { workers: number }).workers, 2);
  t.ok((await readFile(join(dir, 'w0/many.ndp'))).equals(await readFile(join(dir, 'w2/many.ndp'))));
});

t.test('inspect: legacy files, corrupt files, reindex, pcap dispatch', async (t) => {
  const payload = Buffer.alloc(12);
  payload.writeInt32BE(14990, 0);
  payload.writeInt32BE(1879, 4);
  payload.writeInt32BE(13, 8);
  const frame = encodeFrame({ src: SRC.TEXT_CORPUS, dst: DST.EMBEDDING, typ: TYP.TOKEN_IDS, payload });
  await writeFile(join(dir, 'seed.qubgpu'), Buffer.concat([frame, frame, frame.subarray(0, 5)]));
  const cut = await ndp(['inspect', 'seed.qubgpu']);
  t.equal(cut.code, 1);
  t.match(cut.stderr, /NDP_ERR_FILE_TRUNCATED/);
  await writeFile(join(dir, 'seed.qubgpu'), Buffer.concat([frame, frame]));
  const legacy = await ndp(['inspect', 'seed.qubgpu']);
  t.equal(legacy.code, 0, legacy.stderr);
  t.match(legacy.stdout, /legacy frame file/);
  const decoded = await ndp(['inspect', 'seed.qubgpu', '--samples', '--from', '1', '--decode']);
  t.same(JSON.parse(decoded.stdout), { index: 1, src: 'TEXT_CORPUS', tokens: [14990, 1879, 13], loss_mask: [1, 1, 1], text: 'hello world.' });

  const bytes = Buffer.from(await readFile(join(dir, 'out.ndp')));
  const file = await openNdpFile(join(dir, 'out.ndp'));
  const e2 = await file.entry(2);
  await file.close();
  bytes[e2.offset + 50] = bytes[e2.offset + 50]! ^ 0x40;
  await writeFile(join(dir, 'damaged.ndp'), bytes);
  const bad = await ndp(['inspect', 'damaged.ndp']);
  t.equal(bad.code, 1, 'corrupt samples make inspect fail');
  t.match(bad.stdout, /1 of 5 samples corrupt: bad_crc 1/);
  const fixed = await ndp(['inspect', 'damaged.ndp', '--reindex', '--out', 'fixed.ndp']);
  t.equal(fixed.code, 0, fixed.stderr);
  t.match(fixed.stdout, /kept 4 samples/);
  t.equal((await ndp(['inspect', 'fixed.ndp'])).code, 0);

  await writeFile(join(dir, 'x.pcap'), Buffer.alloc(10));
  const pcap = await ndp(['inspect', 'x.pcap']);
  t.notMatch(pcap.stderr, /not available in this build/, 'dispatched to the capture inspector');
});

t.test('ndp inspect --samples | head: the reader leaving ends ndp quietly (no EPIPE stack trace)', async (t) => {
  const path = join(dir, 'pipe.ndp');
  await writeDataset(path, 'pipe', 2000, 300);
  const child = spawn(process.execPath, [cli, 'inspect', path, '--samples'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // Far more than a pipe buffer is left to write when the reader closes its end after the first chunk.
  child.stdout.once('data', () => child.stdout.destroy());
  const [code] = (await once(child, 'exit')) as [number | null];
  t.equal(code, 0);
  t.equal(stderr, '');
});
