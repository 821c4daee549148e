/**
 * `ndp feed -- SCRIPT`: a user's own loop (test/python/fixture_loop.py around NdpBatchDataset,
 * standard library only) receives every batch of a real .ndp file; its reports come back as JSON
 * lines. Real child processes (ndp convert, ndp feed, Python) and real files.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const PYTHON = process.env.NDP_PYTHON ?? 'python3';

function ndp(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'ndp-feed-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const data = join(dir, 'data.ndp');

t.before(async () => {
  const lines = Array.from({ length: 9 }, (_, i) => JSON.stringify({ text: `sample ${i}: ${'word '.repeat(i + 3)}` }));
  writeFileSync(join(dir, 'in.jsonl'), lines.join('\n') + '\n');
  const converted = await ndp(['convert', join(dir, 'in.jsonl'), data, '--quiet']);
  if (converted.code !== 0) throw new Error(converted.stderr);
});

t.test('every batch reaches the script; its reports come back as JSON lines', async (t) => {
  const r = await ndp(['feed', '--data', data, '--batch', '2', '--seq', '16', '--', PYTHON, join(REPO, 'test/python/fixture_loop.py')]);
  t.equal(r.code, 0, r.stderr);
  const reports = r.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, number>);
  t.same(reports.map((x) => x.batch), [0, 1, 2, 3, 4], '9 samples in batches of 2, the last one partial');
  t.ok(reports.every((x) => x.rows === 2 && x.cols === 16), 'every batch [2, 16] (the last one padded)');
  const tokens = Number(/ndp feed: 5 batches, (\d+) tokens/.exec(r.stderr)?.[1]);
  t.equal(reports.reduce((n, x) => n + x.attention_mask!, 0), tokens, 'every token sent arrived (sum of attention masks)');
});

t.test('--max-batches stops early; a failing script is exit 1 with its status and output', async (t) => {
  const limited = await ndp(['feed', '--data', data, '--batch', '2', '--seq', '16', '--max-batches', '2', '--', PYTHON, join(REPO, 'test/python/fixture_loop.py')]);
  t.equal(limited.code, 0, limited.stderr);
  t.equal(limited.stdout.trim().split('\n').length, 2);
  const crashed = await ndp(['feed', '--data', data, '--batch', '2', '--seq', '16', '--', PYTHON, join(REPO, 'test/python/fixture_loop.py')], { NDP_FIXTURE: 'crash' });
  t.equal(crashed.code, 1);
  t.match(crashed.stderr, /NDP_ERR_WORKER_EXITED .*exit status 7/);
  const usage = await ndp(['feed', '--data', data]);
  t.equal(usage.code, 2, 'no command after --');
  const bad = await ndp(['feed', '--data', data, '--batch', '0', '--', PYTHON, '-c', 'pass']);
  t.equal(bad.code, 2, 'a bad flag value is bad usage');
  t.match(bad.stderr, /NDP_ERR_BAD_FEED_OPTION/);
  const badTransport = await ndp(['feed', '--server', 'http://127.0.0.1:1', '--transport', 'tcp', '--', PYTHON, '-c', 'pass']);
  t.equal(badTransport.code, 2, 'an unknown --transport is refused, not taken as udp');
  t.match(badTransport.stderr, /NDP_ERR_BAD_FEED_OPTION: --transport must be udp or ws/);
});
