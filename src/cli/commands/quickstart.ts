/**
 * `ndp quickstart` (what `npm start` runs): the whole product on embedded defaults, as a user would
 * run it by hand — build the demo data, start `ndp serve` as its own process, train LoRA adapters
 * over UDP with `ndp train` as another process, print one report, stop the server.
 *
 * Real processes on purpose: the quick start exercises the same sockets, ready line, SIGTERM path
 * and exit codes that a deployment does, and any failure of either side surfaces with its message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildDemoData } from '../../dataset/demo-data.js';

export const usage = `usage: ndp quickstart [--dir DIR] [--steps N] [--device D] [--transport udp|ws] [--crc-drop P] [--loss L]

Runs the whole pipeline on embedded defaults: builds the demo data (a synthetic pattern task with a
held-out split, plus source files of ndp's own dependencies; nothing is downloaded), starts
\`ndp serve\` on loopback, trains the tiny LoRA model over the network with \`ndp train\`, prints
the report (loss first → last, held-out loss, tokens/s, data-stall %, drops by reason) and stops
the server. Exits non-zero if any stage fails.

  --dir DIR        where the demo data and training output go (default: $TMPDIR/ndp-quickstart)
  --steps N        optimizer steps (default 40)
  --device D       auto | cpu | webgpu | cuda (default auto)
  --transport T    udp | ws (default udp)
  --crc-drop P     CRC-Drop augmentation rate on the trainer (default 0.05, as the seed's claim)
  --loss L         lossy (default: a sample that lost a frame is dropped whole, so the augmentation
                   reaches training) or repair (lost frames are NACKed and resent)`;

const CLI = fileURLToPath(new URL('../main.js', import.meta.url));

interface TrainSummary {
  steps: number;
  firstLoss: number;
  lastLoss: number;
  evalFirst?: number;
  evalLast?: number;
  tokens: number;
  tokensPerSecond: number;
  dataStallPercent: number;
  device: string;
  drops: { samples: Record<string, number>; frames: Record<string, number> };
}

/** Starts `ndp serve` and resolves with its parsed ready line; rejects if it exits first. */
function startServer(files: readonly string[]): Promise<{ child: ChildProcess; ready: { udp: number; ws: number; http: number } }> {
  const child = spawn(process.execPath, [CLI, 'serve', ...files, '--host', '127.0.0.1', '--udp', '0', '--ws', '0', '--http', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`ndp serve exited before it was ready (code ${code}, signal ${signal})`)));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      try {
        resolve({ child, ready: JSON.parse(line) as { udp: number; ws: number; http: number } });
      } catch {
        reject(new Error(`ndp serve printed an unexpected first line: ${line}`));
      }
    });
  });
}

/** Runs `ndp train`, progress on our stderr, and returns the exit code and its stdout. */
function runTrain(args: readonly string[]): Promise<{ code: number; stdout: string }> {
  const child = spawn(process.execPath, [CLI, 'train', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code: code ?? 1, stdout })));
}

function stopServer(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  child.removeAllListeners('exit');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  return exited;
}

function formatCounts(counts: Record<string, number>): string {
  const entries = Object.entries(counts).filter(([, n]) => n > 0);
  return entries.length === 0 ? 'none' : entries.map(([reason, n]) => `${reason} ${n}`).join(', ');
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string', default: join(tmpdir(), 'ndp-quickstart') },
      steps: { type: 'string', default: '40' },
      device: { type: 'string', default: 'auto' },
      transport: { type: 'string', default: 'udp' },
      'crc-drop': { type: 'string', default: '0.05' },
      loss: { type: 'string', default: 'lossy' },
    },
    strict: true,
  });
  if (values.transport !== 'udp' && values.transport !== 'ws') {
    process.stderr.write(`ndp quickstart: --transport must be udp or ws, got '${values.transport}'\n`);
    return 2;
  }
  const dir = values.dir;
  process.stderr.write(`[1/3] demo data in ${dir}\n`);
  const demo = await buildDemoData(join(dir, 'data'));
  process.stderr.write(
    `      train: ${demo.trainSamples} samples, ${demo.trainTokens} tokens (${demo.codeFiles} source files); held-out: ${demo.evalSamples} samples` +
      `${demo.reused ? ' (reused)' : ` (built in ${demo.seconds.toFixed(1)} s)`}\n`,
  );

  process.stderr.write('[2/3] starting ndp serve on loopback\n');
  const { child: server, ready } = await startServer([demo.train]);
  const url = values.transport === 'udp' ? `udp://127.0.0.1:${ready.udp}` : `ws://127.0.0.1:${ready.ws}`;
  const out = join(dir, 'train-out');
  let trained: { code: number; stdout: string };
  let serverCode: number | null;
  try {
    process.stderr.write(`[3/3] ndp train --server ${url}\n`);
    trained = await runTrain([
      '--server', url,
      '--eval-file', demo.eval,
      '--steps', values.steps,
      '--batch', '8',
      '--seq', '64',
      '--lr', '1e-2',
      '--device', values.device,
      '--crc-drop', values['crc-drop'],
      '--loss', values.loss,
      '--out', out,
      '--json',
    ]);
  } finally {
    serverCode = await stopServer(server);
  }
  if (trained.code !== 0) {
    process.stderr.write(`ndp quickstart: ndp train failed (exit ${trained.code})\n`);
    return 1;
  }
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as TrainSummary;
  const lines = [
    '',
    `ndp quickstart: ${summary.steps} LoRA steps on ${summary.device} over ${values.transport.toUpperCase()} from ndp serve`,
    `  train loss        ${summary.firstLoss.toFixed(4)} → ${summary.lastLoss.toFixed(4)}`,
    summary.evalFirst !== undefined && summary.evalLast !== undefined
      ? `  held-out loss     ${summary.evalFirst.toFixed(4)} → ${summary.evalLast.toFixed(4)}`
      : '  held-out loss     not measured',
    `  tokens            ${summary.tokens} (${Math.round(summary.tokensPerSecond)} tokens/s)`,
    `  data stall        ${summary.dataStallPercent.toFixed(1)}% of wall time`,
    `  dropped samples   ${formatCounts(summary.drops.samples)}`,
    `  dropped frames    ${formatCounts(summary.drops.frames)}`,
    `  adapter, metrics  ${out}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
  if (serverCode !== 0) {
    process.stderr.write(`ndp quickstart: ndp serve exited with code ${serverCode} on SIGTERM\n`);
    return 1;
  }
  return 0;
}
