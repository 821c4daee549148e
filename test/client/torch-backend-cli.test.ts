/**
 * `ndp train --backend torch` as a user runs it: real child processes (ndp convert, ndp train, the
 * Python worker), real files. Skipped with the reason where no Python imports torch.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTorchPython } from '../../client/torch-backend.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const found = await findTorchPython();

function ndp(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

t.test('ndp train --backend torch writes metrics, summary and a PEFT adapter; --device webgpu is refused', { skip: found === undefined ? 'no Python here imports torch (Debian: apt-get install python3-torch)' : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ndp-torch-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lines = Array.from({ length: 12 }, (_, i) => JSON.stringify({ text: `def f${i}(x):\n    return x * ${i} + ${i * i}  # sample ${i}` }));
  writeFileSync(join(dir, 'in.jsonl'), lines.join('\n') + '\n');
  const converted = await ndp(['convert', join(dir, 'in.jsonl'), join(dir, 'data.ndp'), '--quiet']);
  t.equal(converted.code, 0, converted.stderr);
  const out = join(dir, 'out');
  const trained = await ndp(['train', '--data', join(dir, 'data.ndp'), '--backend', 'torch', '--device', 'cpu', '--model', 'tiny', '--steps', '2', '--batch', '1', '--seq', '32', '--out', out, '--json'], { NDP_PYTHON: found!.python });
  t.equal(trained.code, 0, trained.stderr);
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { steps: number; firstLoss: number };
  t.equal(summary.steps, 2);
  t.ok(Number.isFinite(summary.firstLoss) && summary.firstLoss > 0, `first loss ${summary.firstLoss}`);
  t.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 2, 'one metrics line per step');
  t.ok(existsSync(join(out, 'adapter_model.safetensors')));
  t.match(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')), { peft_type: 'LORA', base_model_name_or_path: 'tiny' });

  const refused = await ndp(['train', '--data', join(dir, 'data.ndp'), '--backend', 'torch', '--device', 'webgpu', '--steps', '1', '--out', join(dir, 'refused')]);
  t.equal(refused.code, 1);
  t.match(refused.stderr, /NDP_ERR_BAD_TRAIN_OPTION: --device webgpu: the torch backend runs on cpu or cuda/);
});
