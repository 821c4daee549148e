/**
 * Test fixtures for the client: a real .ndp dataset of known samples in a temp dir (written with
 * the dataset writer), and a real data server process (`ndp serve`) on loopback port 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { NdpFileWriter } from '../../src/dataset/ndp-file-writer.js';
import { SRC } from '../../src/protocol/registry.js';

export const REPO = fileURLToPath(new URL('../../..', import.meta.url));
export const CLI = join(REPO, 'dist/src/cli/main.js');

export interface KnownSample {
  readonly tokens: number[];
  readonly lossMask: number[];
}

export { tempDir } from '../temp-dir.js';

/**
 * Writes `count` samples of varied length (1 … maxTokens tokens, so many span several 1472-byte
 * datagrams) with loss masks that hide a prompt prefix on every third sample.
 */
export async function writeDataset(path: string, name: string, count: number, maxTokens = 900, seed = 1, src: number = SRC.CODE_REPO): Promise<KnownSample[]> {
  const writer = await NdpFileWriter.create(path, { name, tokenizer: { name: 'test', hash: '', vocabSize: 50000 }, src });
  const samples: KnownSample[] = [];
  let x = seed >>> 0;
  const next = () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x;
  };
  for (let i = 0; i < count; i++) {
    const length = 1 + (next() % maxTokens);
    const tokens = Array.from({ length }, () => next() % 50000);
    const lossMask = Array.from({ length }, (_, j) => (i % 3 === 0 && j < length / 3 ? 0 : 1));
    samples.push({ tokens, lossMask });
    await writer.append({ tokens: Int32Array.from(tokens), lossMask: Uint8Array.from(lossMask) });
  }
  await writer.finish();
  return samples;
}

export interface ServerProcess {
  readonly process: ChildProcess;
  readonly udp: number;
  readonly ws: number;
  readonly http: number;
  /** Everything the server wrote on stderr so far. */
  stderr(): string;
  /** SIGKILL (a crash) or SIGTERM (graceful), then wait for exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `ndp serve FILES --udp PORT --ws PORT --http PORT ...extra` and waits for its ready line. */
export async function startServer(t: { teardown(fn: () => unknown): void }, files: readonly string[], extra: readonly string[] = [], ports = { udp: 0, ws: 0, http: 0 }): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', ...files, '--host', '127.0.0.1', '--udp', String(ports.udp), '--ws', String(ports.ws), '--http', String(ports.http), ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  t.teardown(() => kill());
  const lines = createInterface({ input: child.stdout! });
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not get ready in 20 s: ${err}`)), 20_000);
    lines.on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (parsed.ready !== true) return;
        clearTimeout(timer);
        resolve(parsed);
      } catch {
        // a log line, not the ready line
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before ready: ${err}`));
    });
  });
  const p = ready as { udp: number; ws: number; http: number };
  return { process: child, udp: p.udp, ws: p.ws, http: p.http, stderr: () => err, kill };
}

/** Free loopback ports for a server that must come back on the same ports after a restart. */
export async function freePorts(): Promise<{ udp: number; ws: number; http: number }> {
  const { createServer } = await import('node:net');
  const dgram = await import('node:dgram');
  const tcp = async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((r) => server.close(() => r()));
    return port;
  };
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  const udp = socket.address().port;
  await new Promise<void>((r) => socket.close(() => r()));
  return { udp, ws: await tcp(), http: await tcp() };
}

/** Runs `ndp ARGS…` to completion; resolves with its exit code and output. */
export async function runCli(args: readonly string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}
