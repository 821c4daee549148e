/**
 * `ndp train` as a user runs it: a real `ndp serve` on loopback streaming H2's demo data, the
 * trainer as a child process; the held-out loss falls, the outputs are there, and the refusals
 * (unreachable server, unavailable device, vocabulary mismatch, bad options) exit 1 with their code.
 */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDemoData } from '../../src/dataset/demo-data.js';
import { runCli, startServer, tempDir } from '../client/fixtures.js';
import { writeCheckpoint } from './checkpoint-fixture.js';
import { MICRO_CONFIG } from './fixtures.js';

const STEPS = 12;

t.test('ndp train --server over UDP (held-out data from a second server over WebSocket) on the demo data lowers the held-out loss and writes adapter + metrics', async (t) => {
  const dir = tempDir(t);
  const demo = await buildDemoData(join(dir, 'demo'), { trainSamples: 400, evalSamples: 40, codeFiles: 0 });
  const server = await startServer(t, [demo.train]);
  const evalServer = await startServer(t, [demo.eval]);
  const out = join(dir, 'out');
  const r = await runCli(
    ['train', '--server', `udp://127.0.0.1:${server.udp}`, '--eval-server', `ws://127.0.0.1:${evalServer.ws}`, '--eval-batches', '2', '--steps', String(STEPS), '--batch', '8', '--seq', '32', '--lr', '2e-2', '--device', 'cpu', '--crc-drop', '0.02', '--out', out, '--json'],
    240_000,
  );
  t.equal(r.code, 0, r.code === 0 ? 'exit 0' : r.stderr);
  const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { steps: number; evalFirst: number; evalLast: number; device: string; drops: { samples: Record<string, number>; frames: Record<string, number> }; tokensPerSecond: number };
  t.equal(summary.steps, STEPS);
  t.equal(summary.device, 'cpu');
  t.ok(summary.evalLast < summary.evalFirst - 0.05, `held-out loss ${summary.evalFirst.toFixed(4)} → ${summary.evalLast.toFixed(4)}`);
  t.ok((summary.drops.frames.augment ?? 0) > 0, `--crc-drop 0.02 dropped frames, counted by reason: ${JSON.stringify(summary.drops)}`);
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  t.equal(lines.length, STEPS, 'one metrics line per step');
  for (const key of ['step', 'loss', 'tokensPerSecond', 'stepMs', 'dataStallMs', 'drops', 'frameDrops']) t.ok(key in (lines[0] ?? {}), `metrics carry ${key}`);
  t.ok(existsSync(join(out, 'adapter_model.safetensors')) && existsSync(join(out, 'adapter_config.json')) && existsSync(join(out, 'summary.json')));
});

t.test('ndp train --data trains from a local file (WebSocket-free, server-free path)', async (t) => {
  const dir = tempDir(t);
  const demo = await buildDemoData(join(dir, 'demo'), { trainSamples: 100, evalSamples: 20, codeFiles: 0 });
  const r = await runCli(['train', '--data', demo.train, '--eval-file', demo.eval, '--eval-batches', '1', '--steps', '3', '--batch', '4', '--seq', '32', '--device', 'cpu', '--grad-accum', '2', '--out', join(dir, 'out'), '--json'], 120_000);
  t.equal(r.code, 0, r.code === 0 ? 'exit 0' : r.stderr);
  const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { steps: number; microBatches: number; evalFirst?: number; evalLast?: number };
  t.same([summary.steps, summary.microBatches], [3, 6], '3 optimizer steps of 2 micro-batches');
  t.ok(Number.isFinite(summary.evalFirst) && Number.isFinite(summary.evalLast), 'held-out loss from --eval-file before and after');
});

t.test('refusals exit 1 with a stable code', async (t) => {
  const dir = tempDir(t);
  const demo = await buildDemoData(join(dir, 'demo'), { trainSamples: 20, evalSamples: 4, codeFiles: 0 });
  const checkpoint = join(dir, 'micro');
  writeCheckpoint(checkpoint, MICRO_CONFIG);
  const cases: [string, string[], RegExp][] = [
    ['unreachable server', ['--server', 'ws://127.0.0.1:9/']],
    ['vocabulary mismatch', ['--data', demo.train, '--model', checkpoint]],
    ['unknown target', ['--data', demo.train, '--target', 'attn']],
    ['bad number', ['--data', demo.train, '--steps', '0']],
    ['no data source', []],
  ].map(([name, args]) => [name as string, args as string[], /./]);
  cases[0]![2] = /NDP_ERR_UNREACHABLE/;
  cases[1]![2] = /NDP_ERR_VOCAB_MISMATCH/;
  cases[2]![2] = /NDP_ERR_BAD_TRAIN_OPTION/;
  cases[3]![2] = /NDP_ERR_BAD_TRAIN_OPTION/;
  cases[4]![2] = /NDP_ERR_BAD_TRAIN_OPTION/;
  for (const [name, args, code] of cases) {
    const r = await runCli(['train', ...args, '--device', 'cpu', '--out', join(dir, 'out')], 120_000);
    t.equal(r.code, 1, `${name}: exit 1`);
    t.match(r.stderr, code, `${name}: ${r.stderr.trim().split('\n').at(-1)}`);
  }
  if (process.env.VK_ICD_FILENAMES === undefined) {
    const r = await runCli(['train', '--data', demo.train, '--device', 'webgpu', '--out', join(dir, 'out')], 120_000);
    t.equal(r.code, 1);
    t.match(r.stderr, /NDP_ERR_DEVICE_UNAVAILABLE: webgpu/, 'webgpu without a Vulkan device is refused by name');
  }
});

t.test('ndp train --loss lossy lets CRC-Drop reach training (whole samples dropped); --token is passed to the server', async (t) => {
  const dir = tempDir(t);
  const demo = await buildDemoData(join(dir, 'demo'), { trainSamples: 200, evalSamples: 10, codeFiles: 0 });
  const server = await startServer(t, [demo.train], ['--token', 's3cret']);
  const common = ['train', '--server', `udp://127.0.0.1:${server.udp}`, '--steps', '2', '--batch', '4', '--seq', '32', '--device', 'cpu', '--crc-drop', '0.2', '--out', join(dir, 'out'), '--json'];
  const refused = await runCli(common, 120_000);
  t.equal(refused.code, 1, 'no token: exit 1');
  t.match(refused.stderr, /NDP_ERR_REFUSED.*NDP_ERR_UNAUTHORIZED/, 'refused by the server for the missing token');
  const r = await runCli([...common, '--token', 's3cret', '--loss', 'lossy', '--dataset', 'demo-train'], 120_000);
  t.equal(r.code, 0, r.code === 0 ? 'exit 0' : r.stderr);
  const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { drops: { samples: Record<string, number> } };
  t.ok((summary.drops.samples.augment ?? 0) > 0, `lossy: samples dropped whole by CRC-Drop: ${JSON.stringify(summary.drops)}`);
  const bad = await runCli(['train', '--server', `udp://127.0.0.1:${server.udp}`, '--loss', 'sometimes', '--out', join(dir, 'out')], 60_000);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /NDP_ERR_BAD_TRAIN_OPTION: --loss sometimes/);
});
