/**
 * One `ndp serve` process's throughput to 1, 4 and 16 trainers on loopback, over UDP and WebSocket,
 * next to raw TCP sending the same number of bytes in the same run (the ceiling: a kernel socket
 * with no framing, pacing, credits or JS per frame). Trainers are ranks of a world of N, so every
 * row moves the same data; they are lean raw receivers in this process (count frames, bytes and
 * tokens, grant credit, NACK gaps) so the figure is the server's, not a client's.
 *
 * Wall-clock rates depend on what else the machine runs (the two processes share its cores), so
 * each row also reports the CPU seconds the sending process spent (server or TCP sender, from
 * /proc) and MB sent per CPU-second: the cost figure that a busy machine does not distort.
 *
 * Run: `npm run build && node dist/bench/server-throughput.js [--samples N] [--tokens T] [--datagram B]
 * [--ws-datagram B] [--trainers 1,4,16] [--cache-bytes B]`.
 * Prints a table (frames/s, tokens/s, MB/s, ratio to TCP, sender CPU) and writes
 * bench/results/server-throughput.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { NdpFileWriter } from '../src/dataset/ndp-file-writer.js';
import { decodeControl, encodeControlFrame, type ControlMessage } from '../src/protocol/control.js';
import { CONTROL, SEGMENT_FLAG, SRC, TYP } from '../src/protocol/registry.js';
import { report, type Row } from './report.js';

const TCP_SENDER = process.argv[2] === '--tcp-sender';
const { values } = parseArgs({
  args: TCP_SENDER ? [] : process.argv.slice(2),
  options: {
    samples: { type: 'string', default: '16000' },
    tokens: { type: 'string', default: '256' },
    datagram: { type: 'string', default: '1472' },
    'ws-datagram': { type: 'string', default: '16384' },
    trainers: { type: 'string', default: '1,4,16' },
    'cache-bytes': { type: 'string' },
  },
});
const SAMPLES = Number(values.samples);
const TOKENS = Number(values.tokens);
const UDP_DATAGRAM = Number(values.datagram);
const WS_DATAGRAM = Number(values['ws-datagram']);
const TRAINERS = values.trainers!.split(',').map(Number);
/** Passed to `ndp serve --cache-bytes`: whether the dataset fits the server's sample cache decides the read path. */
const CACHE_BYTES = values['cache-bytes'];
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface Result {
  /** CPU seconds the sending process used (user + system), from /proc: robust on a loaded machine. */
  senderCpu?: number;
  frames: number;
  bytes: number;
  tokens: number;
  retransmits: number;
  seconds: number;
}

/** A lean trainer: counts what arrives, acknowledges, NACKs gaps, finishes on BYE complete. */
class LeanReceiver {
  session = 0;
  frames = 0;
  bytes = 0;
  tokens = 0;
  retransmits = 0;
  private ack = 0;
  private highest = -1;
  private readonly seen = new Set<number>();
  private sinceCredit = 0;
  private endSeq = -1;
  private timer: NodeJS.Timeout | undefined;
  cookie: Uint8Array | undefined;
  done: Promise<void>;
  accepted: Promise<void>;
  private resolveDone!: () => void;
  private resolveAccepted!: () => void;

  constructor(private readonly sendFrame: (f: Uint8Array) => void, private readonly window: number) {
    this.done = new Promise((r) => (this.resolveDone = r));
    this.accepted = new Promise((r) => (this.resolveAccepted = r));
  }

  control(m: ControlMessage): void {
    this.sendFrame(encodeControlFrame(m, SRC.TRAINER));
  }

  private credit(): void {
    this.sinceCredit = 0;
    this.control({ t: CONTROL.CREDIT, session: this.session, ack: this.ack, window: this.window });
  }

  onFrame(f: Uint8Array): void {
    // Frame: 6-byte header; SEGMENT transport header at 6; fields read in place (no decode objects).
    if (f[3] === TYP.CONTROL) return this.onControl(decodeControl(f.subarray(6, f.length - 2)));
    this.frames++;
    this.bytes += f.length;
    const view = new DataView(f.buffer, f.byteOffset, f.length);
    const seq = view.getUint32(6 + 8);
    if ((f[7]! & SEGMENT_FLAG.RETRANSMIT) !== 0) this.retransmits++;
    if (this.seen.has(seq) || seq < this.ack) return;
    this.seen.add(seq);
    if (seq > this.highest) this.highest = seq;
    if ((f[7]! & SEGMENT_FLAG.LAST_FRAGMENT) !== 0) this.tokens += (view.getUint32(6 + 32) - 8) / 4;
    while (this.seen.delete(this.ack)) this.ack++;
    if (++this.sinceCredit >= this.window / 4) this.credit();
  }

  private onControl(m: ControlMessage): void {
    const r = m as unknown as Record<string, unknown>;
    if (m.t === CONTROL.COOKIE) this.cookie = r.cookie as Uint8Array;
    else if (m.t === CONTROL.ACCEPT) {
      this.session = r.session as number;
      this.timer = setInterval(() => this.tick(), 20);
      this.resolveAccepted();
    } else if (m.t === CONTROL.END) {
      this.endSeq = r.nextSeq as number;
      this.tick();
    } else if (m.t === CONTROL.BYE) {
      clearInterval(this.timer);
      this.resolveDone();
    } else if (m.t === CONTROL.REJECT) throw new Error(`REJECT ${String(r.code)}: ${String(r.message)}`);
  }

  private tick(): void {
    const limit = this.endSeq >= 0 ? this.endSeq : this.highest + 1;
    const ranges: Array<[number, number]> = [];
    for (let s = this.ack; s < limit && ranges.length < 256; s++) {
      if (this.seen.has(s)) continue;
      const last = ranges[ranges.length - 1];
      if (last !== undefined && last[1] === s - 1) last[1] = s;
      else ranges.push([s, s]);
    }
    if (ranges.length > 0) this.control({ t: CONTROL.NACK, session: this.session, ranges });
    this.credit();
  }
}

/** User + system CPU seconds of process `pid` so far (Linux /proc; clock ticks at 100 Hz). */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

async function makeDataset(dir: string): Promise<string> {
  const path = join(dir, 'bench.ndp');
  const writer = await NdpFileWriter.create(path, { name: 'bench', tokenizer: { name: 'bench', hash: '', vocabSize: 1 << 20 } });
  for (let i = 0; i < SAMPLES; i++) await writer.append({ tokens: Int32Array.from({ length: TOKENS }, (_, k) => (i * 31 + k) % 150_000) });
  await writer.finish();
  return path;
}

async function startServer(file: string): Promise<{ proc: ChildProcess; udp: number; ws: number }> {
  const proc = spawn(process.execPath, [CLI, 'serve', file, '--udp', '0', '--ws', '0', '--http', 'off', '--max-session-rate', '4000000000', '--max-total-rate', '8000000000', '--max-window', '16384', '--max-sessions', '64', ...(CACHE_BYTES === undefined ? [] : ['--cache-bytes', CACHE_BYTES])], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let text = '';
    proc.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve(text.slice(0, text.indexOf('\n')));
    });
    proc.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  const ready = JSON.parse(line) as { udp: number; ws: number };
  return { proc, udp: ready.udp, ws: ready.ws };
}

async function runUdp(port: number, trainers: number): Promise<Result> {
  const receivers: LeanReceiver[] = [];
  const sockets: dgram.Socket[] = [];
  for (let rank = 0; rank < trainers; rank++) {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
    socket.setRecvBufferSize(8 * 1024 * 1024);
    const rx = new LeanReceiver((f) => socket.send(f, port, '127.0.0.1'), 4096);
    socket.on('message', (m) => rx.onFrame(m));
    receivers.push(rx);
    sockets.push(socket);
  }
  const start = performance.now();
  await Promise.all(
    receivers.map(async (rx, rank) => {
      rx.control({ t: CONTROL.HELLO, version: 1, pad: new Uint8Array(256) } as ControlMessage);
      while (rx.cookie === undefined) await new Promise((r) => setTimeout(r, 5));
      rx.control({ t: CONTROL.SUBSCRIBE, nonce: 1, cookie: rx.cookie, params: { rank, world: trainers, shuffle: true, rate: 0, window: 4096, datagram: UDP_DATAGRAM } } as ControlMessage);
      await rx.done;
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  for (const s of sockets) s.close();
  return sum(receivers, seconds);
}

async function runWs(port: number, trainers: number): Promise<Result> {
  const receivers: LeanReceiver[] = [];
  const sockets: WebSocket[] = [];
  for (let rank = 0; rank < trainers; rank++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`, 'ndp.v1', { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const rx = new LeanReceiver((f) => ws.send(f), 8192);
    ws.on('message', (data: Buffer) => {
      let at = 0;
      while (at < data.length) {
        const len = ((data[at + 4]! << 8) | data[at + 5]!) + 8;
        rx.onFrame(data.subarray(at, at + len));
        at += len;
      }
    });
    receivers.push(rx);
    sockets.push(ws);
  }
  const start = performance.now();
  await Promise.all(
    receivers.map(async (rx, rank) => {
      rx.control({ t: CONTROL.SUBSCRIBE, nonce: 1, params: { rank, world: trainers, shuffle: true, rate: 0, window: 8192, datagram: WS_DATAGRAM } } as ControlMessage);
      await rx.done;
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  for (const ws of sockets) ws.terminate();
  return sum(receivers, seconds);
}

/** The ceiling: a child process writes `bytes / trainers` to each of `trainers` TCP connections in 64 KiB writes. */
async function runTcp(totalBytes: number, trainers: number): Promise<Result> {
  const per = Math.ceil(totalBytes / trainers);
  const received: number[] = new Array<number>(trainers).fill(0);
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const sender = spawn(process.execPath, [fileURLToPath(import.meta.url), '--tcp-sender', String(port), String(per), String(trainers)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let senderCpu = NaN;
  sender.on('message', (m: { cpu: number }) => (senderCpu = m.cpu));
  // Timed from the first byte, so the sender's process start is not counted.
  let start = 0;
  await new Promise<void>((resolve) => {
    let finished = 0;
    let index = 0;
    server.on('connection', (socket: Socket) => {
      const me = index++;
      socket.on('data', (d) => {
        if (start === 0) start = performance.now();
        received[me]! += d.length;
      });
      socket.on('end', () => {
        if (++finished === trainers) resolve();
      });
    });
  });
  const seconds = (performance.now() - start) / 1000;
  server.close();
  await new Promise<void>((r) => sender.once('exit', () => r()));
  const bytes = received.reduce((a, b) => a + b, 0);
  return { frames: 0, bytes, tokens: 0, retransmits: 0, seconds, senderCpu };
}

async function tcpSender(port: number, per: number, trainers: number): Promise<void> {
  const startCpu = process.cpuUsage();
  const chunk = Buffer.alloc(64 * 1024, 0xaa);
  await Promise.all(
    Array.from({ length: trainers }, async () => {
      const socket = createConnection(port, '127.0.0.1');
      await new Promise<void>((r) => socket.once('connect', () => r()));
      let left = per;
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await new Promise<void>((r) => socket.once('drain', () => r()));
      }
      await new Promise<void>((r) => socket.end(() => r()));
    }),
  );
  // Only the sending part: the process start and module loading are not the ceiling's cost.
  const usage = process.cpuUsage(startCpu);
  process.send?.({ cpu: (usage.user + usage.system) / 1e6 });
  process.disconnect?.();
}

function sum(receivers: LeanReceiver[], seconds: number): Result {
  return {
    frames: receivers.reduce((a, r) => a + r.frames, 0),
    bytes: receivers.reduce((a, r) => a + r.bytes, 0),
    tokens: receivers.reduce((a, r) => a + r.tokens, 0),
    retransmits: receivers.reduce((a, r) => a + r.retransmits, 0),
    seconds,
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ndp-bench-server-'));
  try {
    const file = await makeDataset(dir);
    const rows: Row[] = [];
    for (const trainers of TRAINERS) {
      const server = await startServer(file);
      try {
        // Warm-up (not reported): the file's pages and the server's sample cache, and the JIT.
        await runWs(server.ws, 1);
        let cpu = cpuSeconds(server.proc.pid!);
        const udp = await runUdp(server.udp, trainers);
        udp.senderCpu = cpuSeconds(server.proc.pid!) - cpu;
        cpu = cpuSeconds(server.proc.pid!);
        const ws = await runWs(server.ws, trainers);
        ws.senderCpu = cpuSeconds(server.proc.pid!) - cpu;
        const tcp = await runTcp(ws.bytes, trainers);
        const tcpRate = tcp.bytes / tcp.seconds;
        for (const [transport, r] of [['udp', udp], ['ws', ws], ['tcp (ceiling)', tcp]] as const) {
          rows.push({
            trainers,
            transport: transport === 'udp' ? `udp (${UDP_DATAGRAM} B)` : transport === 'ws' ? `ws (${WS_DATAGRAM} B frames)` : transport,
            'frames/s': r.frames / r.seconds,
            'tokens/s': r.tokens / r.seconds,
            'MB/s': r.bytes / r.seconds / 1e6,
            'vs tcp': r.bytes / r.seconds / tcpRate,
            'sender CPU s': r.senderCpu ?? NaN,
            'MB per CPU-s': r.bytes / 1e6 / (r.senderCpu ?? NaN),
            retransmits: r.retransmits,
            seconds: r.seconds,
          });
        }
      } finally {
        server.proc.kill('SIGTERM');
      }
    }
    report('server-throughput', rows, { samples: SAMPLES, tokensPerSample: TOKENS, udpDatagram: UDP_DATAGRAM, wsDatagram: WS_DATAGRAM, cacheBytes: CACHE_BYTES ?? 'default (64 MiB)', note: 'trainers are ranks of a world of N; each row moves the whole dataset once' }, `ndp serve throughput on loopback (${SAMPLES} samples x ${TOKENS} tokens)`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (TCP_SENDER) {
  await tcpSender(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]));
} else {
  await main();
}
