/**
 * End to end on loopback, side by side in one run: samples → training batches (client/batcher.ts,
 * fixed seqLen) by five routes, the client's CPU and wall time measured the same way for each:
 *
 * - NDP over UDP: `ndp serve` child process → client library (`connect` + `batches()`);
 * - NDP over WebSocket: the same over ws://;
 * - (a) local .ndp: the same file read in this process (`openNdpFile().samples()`);
 * - (b) traditional: the JSONL the .ndp was made from, tokenized on the fly (H2's tokenizer loader,
 *   `encodeBatch` per batch, as a DataLoader's collate would);
 * - (c) raw TCP: a child process sends the same sample bodies length-prefixed over one TCP
 *   connection; this process decodes them (no CRC, no headers, no control): the practical ceiling.
 *
 * Figures per route: samples/s, tokens/s, MB/s of sample bodies, client CPU seconds per million
 * tokens (process.cpuUsage of this process; servers and senders are other processes), data-stall %
 * (time the consumer waited for a batch / wall time), and ratios to (a) and (c).
 *
 * Each route runs `--rounds` times, interleaved with the others (these machines are shared and noisy);
 * the table shows the round with the median wall time.
 *
 * usage: node dist/bench/end-to-end.js [--records N] [--batch B] [--seq-len L] [--step-ms MS] [--datagram BYTES] [--rounds R]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Batcher } from '../client/batcher.js';
import type { Batch } from '../client/batch.js';
import { connect } from '../client/client.js';
import { PrefetchQueue } from '../client/prefetch-queue.js';
import { convertToNdp } from '../src/dataset/convert.js';
import { openNdpFile } from '../src/dataset/ndp-file.js';
import type { Sample } from '../src/dataset/sample.js';
import { loadTokenizer } from '../src/dataset/tokenizer.js';
import { decodeSampleBody } from '../src/protocol/sample-body.js';
import { report, type Row } from './report.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '3000' },
    batch: { type: 'string', default: '8' },
    'seq-len': { type: 'string', default: '1024' },
    'step-ms': { type: 'string', default: '0' },
    datagram: { type: 'string', default: '1472' },
    rounds: { type: 'string', default: '3' },
  },
});
const ROUNDS = Number(values.rounds);
const RECORDS = Number(values.records);
const BATCH = Number(values.batch);
const SEQ_LEN = Number(values['seq-len']);
const STEP_MS = Number(values['step-ms']);
const DATAGRAM = Number(values.datagram);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface RouteResult {
  readonly samples: number;
  readonly tokens: number;
  readonly bodyBytes: number;
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly stallMs: number;
  readonly note?: string;
}

/** Deterministic text that looks like a code repository: functions, comments, Markdown. */
function corpus(records: number): string[] {
  const words = ['tensor', 'batch', 'frame', 'socket', 'reassemble', 'gradient', 'adapter', 'shard', 'epoch', 'cursor', 'window', 'credit', 'datagram', 'payload', 'checksum', 'sample'];
  let x = 12345;
  const next = (n: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) % n;
  };
  const w = () => words[next(words.length)]!;
  const out: string[] = [];
  for (let r = 0; r < records; r++) {
    const parts: string[] = [`# ${w()} ${w()}\n\nThis module handles the ${w()} and the ${w()} of each ${w()}.\n`];
    const functions = 2 + next(10);
    for (let f = 0; f < functions; f++) {
      parts.push(`\n/** Returns the ${w()} of a ${w()}. */\nexport function ${w()}${w().toUpperCase()}${f}(${w()}: number, ${w()}: Uint8Array): number {\n  let total = ${next(1000)};\n  for (let i = 0; i < ${w()}.length; i++) total += ${w()}[i] * ${next(97)};\n  return total % ${next(65535) + 1};\n}\n`);
    }
    out.push(parts.join(''));
  }
  return out;
}

/** Consumes batches from `produce` through a prefetch queue of 4, with the optional simulated step. */
async function consume(produce: (push: (b: Batch) => Promise<void>) => Promise<void>): Promise<{ stallMs: number; batches: number }> {
  const queue = new PrefetchQueue<Batch>(4);
  const producer = produce((b) => queue.push(b)).then(
    () => queue.end(),
    (err: unknown) => queue.fail(err),
  );
  let batches = 0;
  for await (const b of queue) {
    void b;
    batches++;
    if (STEP_MS > 0) await sleep(STEP_MS);
  }
  await producer;
  return { stallMs: queue.stats.stallMs, batches };
}

async function timed(run: () => Promise<Omit<RouteResult, 'wallMs' | 'cpuMs'>>): Promise<RouteResult> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const result = await run();
  const wallMs = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return { ...result, wallMs, cpuMs: (used.user + used.system) / 1000 };
}

function batchSamples(batcher: Batcher, sample: Sample, push: (b: Batch) => Promise<void>): Promise<void> | undefined {
  const { batches } = batcher.push(sample);
  return batches.length === 0 ? undefined : Promise.all(batches.map(push)).then(() => undefined);
}

async function localNdp(path: string): Promise<RouteResult> {
  return timed(async () => {
    const file = await openNdpFile(path);
    let samples = 0;
    let tokens = 0;
    let bodyBytes = 0;
    const batcher = new Batcher({ batchSize: BATCH, seqLen: SEQ_LEN });
    const { stallMs } = await consume(async (push) => {
      for await (const s of file.samples()) {
        samples++;
        tokens += s.tokens.length;
        bodyBytes += s.body.length;
        await batchSamples(batcher, s, push);
      }
      const last = batcher.flush();
      if (last) await push(last);
    });
    await file.close();
    return { samples, tokens, bodyBytes, stallMs };
  });
}

async function jsonlTokenize(path: string): Promise<RouteResult> {
  const tokenizer = await loadTokenizer('qwen3');
  return timed(async () => {
    let samples = 0;
    let tokens = 0;
    const batcher = new Batcher({ batchSize: BATCH, seqLen: SEQ_LEN });
    const { stallMs } = await consume(async (push) => {
      const lines = createInterface({ input: createReadStream(path) });
      let pending: string[] = [];
      const flushTexts = async () => {
        const ids = await tokenizer.encodeBatch(pending);
        for (const t of ids) {
          samples++;
          tokens += t.length;
          await batchSamples(batcher, { index: samples - 1, src: 1, tokens: t, lossMask: new Uint8Array(t.length).fill(1) }, push);
        }
        pending = [];
      };
      for await (const line of lines) {
        pending.push((JSON.parse(line) as { text: string }).text);
        if (pending.length === BATCH) await flushTexts();
      }
      if (pending.length > 0) await flushTexts();
      const last = batcher.flush();
      if (last) await push(last);
    });
    return { samples, tokens, bodyBytes: tokens * 4 + 8 * samples, stallMs, note: `tokenizer engine ${tokenizer.engine}` };
  });
}

/** A child process that sends every sample body of `path` length-prefixed to the first TCP client. */
async function tcpSender(path: string): Promise<{ child: ChildProcess; port: number }> {
  const ndpFile = new URL('../src/dataset/ndp-file.js', import.meta.url).href;
  const script = `
    import { createServer } from 'node:net';
    import { openNdpFile } from ${JSON.stringify(ndpFile)};
    const file = await openNdpFile(${JSON.stringify(path)});
    const bodies = [];
    for await (const s of file.samples()) bodies.push(s.body);
    // One buffer of length-prefixed bodies, written in 1 MiB slices: the sender is never the bottleneck.
    const total = bodies.reduce((n, b) => n + 4 + b.length, 0);
    const all = Buffer.alloc(total);
    let at = 0;
    for (const b of bodies) { all.writeUInt32BE(b.length, at); all.set(b, at + 4); at += 4 + b.length; }
    const server = createServer((socket) => {
      let offset = 0;
      const write = () => {
        while (offset < all.length) {
          const slice = all.subarray(offset, offset + (1 << 20));
          offset += slice.length;
          if (!socket.write(slice)) return socket.once('drain', write);
        }
        socket.end();
        server.close();
      };
      write();
    });
    server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve));
  return { child, port: (JSON.parse(line) as { port: number }).port };
}

async function rawTcp(path: string): Promise<RouteResult> {
  const { child, port } = await tcpSender(path);
  try {
    return await timed(async () => {
      let samples = 0;
      let tokens = 0;
      let bodyBytes = 0;
      const batcher = new Batcher({ batchSize: BATCH, seqLen: SEQ_LEN });
      const { stallMs } = await consume(async (push) => {
        const socket = tcpConnect(port, '127.0.0.1');
        let buffered: Buffer = Buffer.alloc(0);
        for await (const chunk of socket) {
          buffered = buffered.length === 0 ? (chunk as Buffer) : Buffer.concat([buffered, chunk as Buffer]);
          let at = 0;
          while (buffered.length - at >= 4) {
            const len = buffered.readUInt32BE(at);
            if (buffered.length - at - 4 < len) break;
            const { tokens: t, lossMask } = decodeSampleBody(buffered.subarray(at + 4, at + 4 + len));
            at += 4 + len;
            samples++;
            tokens += t.length;
            bodyBytes += len;
            await batchSamples(batcher, { index: samples - 1, src: 1, tokens: t, lossMask }, push);
          }
          buffered = buffered.subarray(at);
        }
        const last = batcher.flush();
        if (last) await push(last);
      });
      return { samples, tokens, bodyBytes, stallMs };
    });
  } finally {
    child.kill();
  }
}

async function startServer(path: string): Promise<{ child: ChildProcess; udp: number; ws: number }> {
  const child = spawn(process.execPath, [CLI, 'serve', path, '--host', '127.0.0.1', '--udp', '0', '--ws', '0', '--http', 'off'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const ready = await new Promise<{ udp: number; ws: number }>((resolve) =>
    lines.on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { ready?: boolean; udp: number; ws: number };
        if (parsed.ready === true) resolve(parsed);
      } catch {
        // a log line
      }
    }),
  );
  return { child, ...ready };
}

async function ndp(url: string, datagram: number): Promise<RouteResult & { frames: number; missing: number; crc: number }> {
  let extra = { frames: 0, missing: 0, crc: 0 };
  const result = await timed(async () => {
    // The fastest the server allows (its --max-session-rate, 1 GB/s by default).
    const client = await connect(url, { params: { rate: 1_000_000_000, datagram, window: 4096 } });
    let samples = 0;
    let tokens = 0;
    for await (const b of client.batches({ batchSize: BATCH, seqLen: SEQ_LEN, equalSteps: false, prefetch: 4 })) {
      samples += b.sampleIndices.length;
      tokens += b.tokenCount;
      if (STEP_MS > 0) await sleep(STEP_MS);
    }
    const s = client.stats;
    extra = { frames: s.frames.received, missing: s.frames.missing, crc: s.frames.dropped.crc };
    await client.close();
    // Sample-body bytes (plain text: no loss mask), comparable with the other routes; wire bytes are in the note.
    return { samples, tokens, bodyBytes: tokens * 4 + samples * 8, stallMs: s.stallMs, note: `${s.frames.received} frames, ${s.bytes.received} wire bytes, ${s.frames.missing} missing → repaired, recv buffer ${s.recvBufferSize ?? '-'} B` };
  });
  return { ...result, ...extra };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ndp-bench-e2e-'));
  try {
    const jsonl = join(dir, 'corpus.jsonl');
    writeFileSync(jsonl, corpus(RECORDS).map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const ndpPath = join(dir, 'corpus.ndp');
    const summary = await convertToNdp([jsonl], ndpPath, { name: 'corpus' });
    process.stdout.write(`corpus: ${summary.records} records → ${summary.samples} samples, ${summary.tokens} tokens, .ndp ${summary.bytesOut} bytes\n`);
    const server = await startServer(ndpPath);
    const routes: Array<[string, () => Promise<RouteResult>]> = [
      [`NDP over UDP (datagram ${DATAGRAM})`, () => ndp(`udp://127.0.0.1:${server.udp}`, DATAGRAM)],
      [`NDP over WebSocket (datagram ${DATAGRAM})`, () => ndp(`ws://127.0.0.1:${server.ws}`, DATAGRAM)],
      ['NDP over WebSocket (datagram 65535)', () => ndp(`ws://127.0.0.1:${server.ws}`, 65535)],
      ['(a) local .ndp file', () => localNdp(ndpPath)],
      ['(b) JSONL + tokenize on the fly', () => jsonlTokenize(jsonl)],
      ['(c) raw TCP, same bodies (ceiling)', () => rawTcp(ndpPath)],
    ];
    const runs = new Map<string, RouteResult[]>(routes.map(([name]) => [name, []]));
    try {
      // Warm-up (JIT, page cache, the server's reader) so the first timed route is not penalised.
      await localNdp(ndpPath);
      await ndp(`ws://127.0.0.1:${server.ws}`, DATAGRAM);
      for (let round = 0; round < ROUNDS; round++) for (const [name, run] of routes) runs.get(name)!.push(await run());
    } finally {
      server.child.kill('SIGTERM');
    }
    const results: Array<[string, RouteResult]> = routes.map(([name]) => {
      const sorted = [...runs.get(name)!].sort((x, y) => x.wallMs - y.wallMs);
      return [name, sorted[Math.floor(sorted.length / 2)]!];
    });
    const local = results.find(([n]) => n.startsWith('(a)'))![1];
    const tcp = results.find(([n]) => n.startsWith('(c)'))![1];
    const rate = (r: RouteResult) => r.tokens / (r.wallMs / 1000);
    const rows: Row[] = results.map(([route, r]) => ({
      route,
      'samples/s': r.samples / (r.wallMs / 1000),
      'tokens/s': rate(r),
      'MB/s': r.bodyBytes / 1e6 / (r.wallMs / 1000),
      'CPU s/M tokens': r.cpuMs / 1000 / (r.tokens / 1e6),
      'stall %': (100 * r.stallMs) / r.wallMs,
      'vs (a) local': rate(r) / rate(local),
      'vs (c) TCP': rate(r) / rate(tcp),
    }));
    report('end-to-end', rows, {
      records: RECORDS,
      samples: summary.samples,
      tokens: summary.tokens,
      batchSize: BATCH,
      seqLen: SEQ_LEN,
      stepMs: STEP_MS,
      rounds: ROUNDS,
      wallMsPerRound: Object.fromEntries([...runs].map(([name, rs]) => [name, rs.map((r) => Math.round(r.wallMs))])),
      notes: Object.fromEntries(results.map(([route, r]) => [route, r.note ?? ''])),
    }, `End to end on loopback: samples → batches [${BATCH} × ${SEQ_LEN}], ${summary.samples} samples, ${summary.tokens} tokens (client CPU = this process; median of ${ROUNDS} rounds)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
