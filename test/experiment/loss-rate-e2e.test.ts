/**
 * `ndp experiment loss-rate` end to end, as a user runs it: real `ndp serve`, `ndp pull` and
 * `ndp train` processes on loopback (and across a namespace lab when root), a handful of steps of the
 * tiny model, and the report folder checked against the exact counts the run recorded.
 */
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildDemoData } from '../../src/dataset/demo-data.js';
import type { ExperimentResult } from '../../src/experiment/loss-rate-result.js';
import { NetworkLab, listLabNamespaces } from '../../src/experiment/network-lab.js';
import { isNdpError } from '../../src/protocol/errors.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const dir = await mkdtemp(join(tmpdir(), 'ndp-experiment-e2e-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
// A small pattern task: the runs stream 200 samples and train 2 steps.
const demo = await buildDemoData(join(dir, 'data'), { codeFiles: 0, trainSamples: 200, evalSamples: 8 });
const DATA = ['--data', demo.train, '--eval-data', demo.eval, '--steps', '2', '--eval-batches', '1', '--seeds', '1'];

async function experiment(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'experiment', 'loss-rate', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** Processes whose command line mentions `marker` (the run's own output folder). */
async function processesMentioning(marker: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid,args']);
  return stdout.split('\n').filter((l) => l.includes(marker) && !l.includes(' ps '));
}

t.test('client-side CRC-Drop: two runs, a report whose counts add up', async (t) => {
  const out = join(dir, 'client');
  const r = await experiment([...DATA, '--rates', '0,0.2', '--out', out]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /No test possible/, 'one seed: the conclusion says no claim');
  const result = JSON.parse(await readFile(join(out, 'runs.json'), 'utf8')) as ExperimentResult;
  t.equal(result.runs.length, 2);
  for (const run of result.runs) {
    t.ok(run.ok, run.error ?? '');
    t.equal(run.steps, 2);
    t.ok(Number.isFinite(run.finalEvalLoss) && run.finalEvalLoss > 0, 'a held-out loss');
    t.equal(run.evalCurve[0]?.step, 0, 'evaluated before the first step');
    t.same(run.commands.train?.slice(2, 4), ['train', '--data'], 'trained from the delivered samples file');
    t.ok(run.commands.pull?.includes('lossy'), 'a lossy session');
    const injected = run.injected!;
    t.equal(injected.counter, 'client');
    t.equal(injected.dropped, run.accounting['frames.dropped.augment'] ?? 0, 'injected = what the client counted');
    t.equal(run.delivery!.samples, run.accounting['samples.delivered'], 'trained on exactly the delivered samples');
    t.equal(run.delivery!.orderMismatches, 0, 'one stream order');
  }
  const lossy = result.runs.find((x) => x.rate === 0.2)!;
  t.ok(lossy.injected!.dropped > 0, 'frames were dropped at 20%');
  t.ok(lossy.delivery!.samples < result.runs.find((x) => x.rate === 0)!.delivery!.samples, 'fewer samples delivered');
  const md = await readFile(join(out, 'REPORT.md'), 'utf8');
  t.match(md, `ndp experiment loss-rate --data ${demo.train}`, 'the exact command');
  t.match(md, '| 20% | 1 |');
  t.match(await readFile(join(out, 'loss-vs-step.svg'), 'utf8'), /<svg /);
  t.same(await processesMentioning(out), [], 'no server, pull or train process left');
});

t.test('server-side corruption, dropped by the client on its CRC', async (t) => {
  const out = join(dir, 'server');
  const r = await experiment([...DATA, '--rates', '0.2', '--where', 'server', '--out', out]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /No 0% baseline/);
  const run = (JSON.parse(await readFile(join(out, 'runs.json'), 'utf8')) as ExperimentResult).runs[0]!;
  t.ok(run.ok, run.error ?? '');
  t.ok(run.injected!.corrupted > 0);
  t.equal(run.injected!.corrupted, run.accounting['frames.dropped.crc'], 'every corrupted frame failed its CRC at the client');
});

/** Why a namespace lab cannot be built here (not root, no CAP_NET_ADMIN, no nftables), or false. */
async function labUnavailable(): Promise<string | false> {
  try {
    await (await NetworkLab.create({})).close();
    return false;
  } catch (err) {
    if (isNdpError(err, 'NDP_ERR_NETNS_UNAVAILABLE')) return `network namespaces not permitted here: ${err.message}`;
    throw err;
  }
}

t.test('network: nftables in a namespace lab corrupts frames on the wire; the lab is gone afterwards', { skip: await labUnavailable() }, async (t) => {
  const out = join(dir, 'network');
  const before = await listLabNamespaces();
  const r = await experiment([...DATA, '--rates', '0.2', '--where', 'network', '--out', out]);
  t.equal(r.code, 0, r.stderr);
  const run = (JSON.parse(await readFile(join(out, 'runs.json'), 'utf8')) as ExperimentResult).runs[0]!;
  t.ok(run.ok, run.error ?? '');
  t.equal(run.injected!.counter, 'nft');
  t.ok(run.injected!.corrupted > 0);
  t.equal(run.injected!.corrupted, run.accounting['frames.dropped.crc'], 'what nft corrupted, the client dropped on its CRC');
  t.same(await listLabNamespaces(), before, 'no namespace left behind');
});

t.test('interrupted with SIGINT: exits 130, leaves no process behind', async (t) => {
  const out = join(dir, 'interrupted');
  const child = spawn(process.execPath, [CLI, 'experiment', 'loss-rate', ...DATA, '--rates', '0,0.2', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  await new Promise<void>((resolve) => {
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.includes('started')) resolve();
    });
  });
  // Let the run's processes start, then interrupt.
  await new Promise((r) => setTimeout(r, 1500));
  child.kill('SIGINT');
  const [code] = (await once(child, 'exit')) as [number | null];
  t.equal(code, 130);
  t.same(await processesMentioning(out), [], 'no server, pull or train process left');
});

/** Runs as the unprivileged user `nobody` need setpriv (util-linux) and root to drop from. */
const asNobody = process.getuid?.() === 0 && (await promisify(execFile)('setpriv', ['--version']).then(() => true, () => false));
t.test('--where network without the right to build namespaces: exit 77 with the code, nothing run', { skip: asNobody ? false : 'needs root and setpriv to run a process as nobody' }, async (t) => {
  const out = join(dir, 'not-permitted');
  const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'experiment', 'loss-rate', ...DATA, '--where', 'network', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  t.equal(code, 77);
  t.match(stderr, /skipping --where network: NDP_ERR_NETNS_UNAVAILABLE/);
  await t.rejects(readFile(join(out, 'runs.json')), 'no run was started');
});

t.test('bad usage: exit 2 with the code', async (t) => {
  const r = await experiment(['--rates', '0,1.5']);
  t.equal(r.code, 2);
  t.match(r.stderr, /NDP_ERR_EXPERIMENT_BAD_OPTION/);
});
