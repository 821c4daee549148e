/**
 * Test helpers for the data server: real .ndp files in a temp dir, a real `ndp serve` child process
 * on port 0, and a minimal raw receiver (dgram / ws + the protocol module) that speaks NDP.md §7
 * just enough to check what the server sends. The real trainer client lives in client/; these tests
 * must not depend on it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import WebSocket from 'ws';
import { NdpFileWriter } from '../../src/dataset/ndp-file-writer.js';
import { decodeControl, encodeControlFrame, type ControlMessage, type SessionParams } from '../../src/protocol/control.js';
import { decodeFrame, readFrameAt, type DecodedFrame } from '../../src/protocol/frame.js';
import { CONTROL, SEGMENT_FLAG, SRC, TYP } from '../../src/protocol/registry.js';
import { decodeSampleBody } from '../../src/protocol/sample-body.js';
import { readTransportHeader, type TransportHeader } from '../../src/protocol/transport-header.js';

export const REPO = fileURLToPath(new URL('../../..', import.meta.url));
export const CLI = join(REPO, 'dist/src/cli/main.js');

export async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ndp-server-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Tokens of sample `i` of a test dataset: distinct per (seed, i); some long enough to need several fragments. */
export function sampleTokens(base: number, i: number, fixedLength?: number): Int32Array {
  const length = fixedLength ?? (i % 17 === 3 ? 700 : 1 + ((i * 37) % 90));
  return Int32Array.from({ length }, (_, k) => base + i * 1000 + k);
}

/** Writes an .ndp file of `count` samples and returns its path. */
export async function makeDataset(dir: string, name: string, count: number, src: number = SRC.TEXT_CORPUS, base = 0, fixedLength?: number): Promise<string> {
  const path = join(dir, `${name}.ndp`);
  const writer = await NdpFileWriter.create(path, { name, src, tokenizer: { name: 'test', hash: '', vocabSize: 1 << 30 } });
  for (let i = 0; i < count; i++) await writer.append({ tokens: sampleTokens(base, i, fixedLength) });
  await writer.finish();
  return path;
}

export interface Ready {
  ready: true;
  udp: number | null;
  ws: number | null;
  http: number | null;
  [key: string]: unknown;
}

export interface ServerProcess {
  readonly proc: ChildProcess;
  readonly ready: Ready;
  readonly stdout: string[];
  stderr(): string;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  baseUrl: string;
}

/** Spawns `ndp serve FILES --udp 0 --ws 0 --http 0 ARGS` and waits for its ready line. */
export async function startServer(t: { teardown(fn: () => unknown): void }, files: string[], args: string[] = []): Promise<ServerProcess> {
  const proc = spawn(process.execPath, [CLI, 'serve', ...files, '--udp', '0', '--ws', '0', '--http', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const lines: string[] = [];
  let buffered = '';
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const ready = await new Promise<Ready>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        lines.push(line);
        if (lines.length === 1) {
          try {
            resolve(JSON.parse(line) as Ready);
          } catch {
            reject(new Error(`not a ready line: ${line}`));
          }
        }
      }
    });
    void exited.then((code) => reject(new Error(`server exited (${code}) before ready: ${err}`)));
  });
  let stopped: Promise<number | null> | undefined;
  const stop = (): Promise<number | null> => {
    stopped ??= (async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    })();
    return stopped;
  };
  t.teardown(stop);
  return { proc, ready, stdout: lines, stderr: () => err, stop, baseUrl: `http://127.0.0.1:${ready.http}` };
}

export interface ReceivedSample {
  readonly epoch: number;
  readonly position: number;
  readonly source: number;
  readonly sample: number;
  readonly firstSeq: number;
  readonly tokens: Int32Array;
  readonly src: number;
  readonly dst: number;
}

export interface ReceiverOptions {
  /** Credit window to grant (frames). Defaults to 256. */
  window?: number;
  /** Send NACKs for gaps (repair sessions). Defaults to true. */
  nack?: boolean;
  /** Stop sending CREDIT and reading (the "stopped reader"). */
  frozen?: boolean;
  /** Grant credit but never acknowledge anything (CREDIT ack stays 0). */
  holdAck?: boolean;
}

/**
 * The receiving half of a minimal raw NDP client: frames in, samples out, CREDIT/NACK back. Counts
 * what it could not use by reason.
 */
export class StreamCollector {
  session = 0;
  accept: Record<string, unknown> | undefined;
  reject: { code: string; message: string } | undefined;
  end: { nextSeq: number; cursor: { epoch: number; position: number }; counters: { frames: number; retransmitted: number; injectedDrop: number; injectedCorrupt: number; routedDrop: number; gone: number } } | undefined;
  bye: { reason: string; code?: string; cursor?: { epoch: number; position: number } } | undefined;
  readonly gone: Array<{ ranges: Array<[number, number]>; reason: string }> = [];
  readonly received = new Set<number>();
  readonly retransmitted = new Set<number>();
  readonly dropped: Record<string, number> = {};
  readonly badCrcFrames: Uint8Array[] = [];
  readonly controls: ControlMessage[] = [];
  private readonly parts = new Map<string, { header: TransportHeader; frags: Map<number, Uint8Array>; src: number; dst: number }>();
  readonly samples: ReceivedSample[] = [];
  ack = 0;
  highest = -1;
  frames = 0;
  bytes = 0;
  private sinceCredit = 0;
  private timer: NodeJS.Timeout | undefined;
  private waiters: Array<() => void> = [];

  constructor(private readonly sendFrame: (frame: Uint8Array) => void, readonly options: ReceiverOptions = {}) {}

  get window(): number {
    return this.options.window ?? 256;
  }

  private count(reason: string): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
  }

  control(message: ControlMessage): void {
    this.sendFrame(encodeControlFrame(message, SRC.TRAINER));
  }

  /** Sends SUBSCRIBE (new session with `params`, or attach with `extra.session` + ticket); resolves once ACCEPT or REJECT arrived. */
  async subscribe(params: SessionParams, extra: { token?: string; session?: number; ticket?: string; cookie?: Uint8Array }): Promise<void> {
    const subscribe: Record<string, unknown> = { t: CONTROL.SUBSCRIBE, nonce: 1, ...extra };
    if (extra.session === undefined) subscribe.params = params;
    this.control(subscribe as unknown as ControlMessage);
    await this.until(() => this.accept !== undefined || this.reject !== undefined, 10_000, 'ACCEPT');
  }

  /** One whole frame from the server. */
  onFrame(bytes: Uint8Array): void {
    let frame: DecodedFrame;
    try {
      frame = decodeFrame(bytes);
    } catch {
      return this.count('bad_frame');
    }
    this.frames++;
    this.bytes += bytes.length;
    if (!frame.crcOk) {
      this.badCrcFrames.push(Uint8Array.from(bytes));
      return this.count('bad_crc');
    }
    if (frame.typ === TYP.CONTROL) return this.onControl(decodeControl(frame.payload));
    if (frame.typ !== TYP.SEGMENT) return this.count('unexpected_typ');
    const { header, fragment } = readTransportHeader(frame.payload);
    if (header.session !== this.session) return this.count('foreign');
    if (this.received.has(header.seq)) return this.count('duplicate');
    this.received.add(header.seq);
    if ((header.flags & SEGMENT_FLAG.RETRANSMIT) !== 0) this.retransmitted.add(header.seq);
    if (header.seq > this.highest) this.highest = header.seq;
    const key = `${header.epoch}:${header.position}`;
    let part = this.parts.get(key);
    if (part === undefined) {
      part = { header, frags: new Map(), src: frame.src, dst: frame.dst };
      this.parts.set(key, part);
    }
    part.frags.set(header.fragIndex, Uint8Array.from(fragment));
    if (header.fragIndex === 0) part.header = header;
    if (part.frags.size === header.fragCount) {
      const body = new Uint8Array(header.bodyLength);
      let at = 0;
      for (let i = 0; i < header.fragCount; i++) {
        body.set(part.frags.get(i)!, at);
        at += part.frags.get(i)!.length;
      }
      this.parts.delete(key);
      if (crc32(body) >>> 0 !== header.bodyCrc) return this.count('body_crc');
      const h = part.header;
      this.samples.push({ epoch: h.epoch, position: h.position, source: h.source, sample: h.sample, firstSeq: h.seq - h.fragIndex, tokens: decodeSampleBody(body).tokens, src: part.src, dst: part.dst });
    }
    this.advanceAck();
    if (++this.sinceCredit >= this.window / 4) this.credit();
  }

  private advanceAck(): void {
    while (this.received.has(this.ack)) this.ack++;
    if (this.options.nack === false) {
      // lossy: every gap below the highest seq is given up at once
      if (this.highest + 1 > this.ack) this.ack = this.highest + 1;
    }
  }

  credit(): void {
    if (this.options.frozen === true || this.session === 0) return;
    this.sinceCredit = 0;
    this.control({ t: CONTROL.CREDIT, session: this.session, ack: this.options.holdAck === true ? 0 : this.ack, window: this.window });
  }

  private onControl(message: ControlMessage): void {
    this.controls.push(message);
    const m = message as unknown as Record<string, unknown>;
    switch (message.t) {
      case CONTROL.ACCEPT:
        this.accept = m;
        this.session = m.session as number;
        this.startTimer();
        break;
      case CONTROL.REJECT:
        this.reject = { code: m.code as string, message: m.message as string };
        break;
      case CONTROL.END:
        this.end = m as unknown as StreamCollector['end'];
        break;
      case CONTROL.BYE:
        this.bye = m as unknown as StreamCollector['bye'];
        this.stopTimer();
        break;
      case CONTROL.GONE:
        this.gone.push({ ranges: m.ranges as Array<[number, number]>, reason: m.reason as string });
        for (const [a, b] of m.ranges as Array<[number, number]>) for (let s = a; s <= b; s++) this.received.add(s);
        this.advanceAck();
        break;
    }
    this.wake();
  }

  private startTimer(): void {
    this.timer = setInterval(() => this.tick(), 30);
  }

  stopTimer(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    if (this.options.frozen === true) return;
    const limit = this.end?.nextSeq ?? this.highest + 1;
    if (this.end !== undefined && this.options.nack === false) this.ack = Math.max(this.ack, this.end.nextSeq);
    if (this.options.nack !== false && this.options.holdAck !== true && this.ack < limit) {
      const ranges: Array<[number, number]> = [];
      for (let s = this.ack; s < limit && ranges.length < 256; s++) {
        if (this.received.has(s)) continue;
        const last = ranges[ranges.length - 1];
        if (last !== undefined && last[1] === s - 1) last[1] = s;
        else ranges.push([s, s]);
      }
      if (ranges.length > 0) this.control({ t: CONTROL.NACK, session: this.session, ranges });
    }
    this.credit();
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when `predicate` holds (checked after every control message and timer tick). */
  async until(predicate: () => boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Samples sorted by stream order. */
  ordered(): ReceivedSample[] {
    return [...this.samples].sort((a, b) => a.epoch - b.epoch || a.position - b.position);
  }
}

/** A raw UDP client: HELLO (padded) → COOKIE → SUBSCRIBE, then a StreamCollector. */
export class RawUdpClient {
  readonly socket = dgram.createSocket('udp4');
  readonly collector: StreamCollector;
  cookie: Uint8Array | undefined;
  readonly inbox: ControlMessage[] = [];
  bytesIn = 0;
  bytesOut = 0;

  constructor(readonly port: number, options: ReceiverOptions = {}) {
    this.collector = new StreamCollector((frame) => this.send(frame), options);
    this.socket.on('message', (msg) => {
      this.bytesIn += msg.length;
      if (this.collector.options.frozen === true && this.collector.session !== 0) return;
      try {
        const frame = decodeFrame(msg);
        if (frame.crcOk && frame.typ === TYP.CONTROL) {
          const m = decodeControl(frame.payload);
          this.inbox.push(m);
          if (m.t === CONTROL.COOKIE) this.cookie = (m as { cookie: Uint8Array }).cookie;
        }
      } catch {
        // the collector counts it
      }
      this.collector.onFrame(msg);
    });
  }

  async bind(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', resolve));
    this.socket.setRecvBufferSize(8 * 1024 * 1024);
  }

  send(frame: Uint8Array): void {
    this.bytesOut += frame.length;
    this.socket.send(frame, this.port, '127.0.0.1');
  }

  hello(token?: string, padTo = 256): void {
    const base: ControlMessage = token === undefined ? { t: CONTROL.HELLO, version: 1 } : { t: CONTROL.HELLO, version: 1, token };
    const bare = encodeControlFrame(base, SRC.TRAINER).length;
    const pad = new Uint8Array(Math.max(0, padTo - bare - 6));
    this.send(encodeControlFrame({ ...base, pad } as ControlMessage, SRC.TRAINER));
  }

  /** Full handshake; resolves once ACCEPT or REJECT arrived. */
  async open(params: SessionParams, extra: { token?: string; session?: number; ticket?: string } = {}): Promise<void> {
    for (let attempt = 0; attempt < 8 && this.cookie === undefined; attempt++) {
      this.hello(extra.token);
      await this.collector.until(() => this.cookie !== undefined || this.collector.reject !== undefined, 250 * 2 ** Math.min(attempt, 3)).catch(() => undefined);
      if (this.collector.reject !== undefined) return;
    }
    if (this.cookie === undefined) throw new Error('no COOKIE');
    await this.collector.subscribe(params, { cookie: this.cookie, ...extra });
  }

  close(): void {
    this.collector.stopTimer();
    this.socket.close();
  }
}

/** A raw WebSocket client (subprotocol ndp.v1) around a StreamCollector. */
export class RawWsClient {
  readonly collector: StreamCollector;
  messages = 0;
  closeCode: number | undefined;
  closeReason = '';
  private closedResolve!: () => void;
  readonly closed = new Promise<void>((resolve) => (this.closedResolve = resolve));

  constructor(readonly ws: WebSocket, options: ReceiverOptions = {}) {
    this.collector = new StreamCollector((frame) => ws.send(frame), options);
    ws.on('message', (data: Buffer) => {
      this.messages++;
      let offset = 0;
      while (offset < data.length) {
        const read = readFrameAt(data, offset);
        if (read === undefined) throw new Error('partial frame in a WebSocket message');
        this.collector.onFrame(data.subarray(offset, read.end));
        offset = read.end;
      }
    });
    ws.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      this.collector.stopTimer();
      this.closedResolve();
    });
  }

  static async connect(port: number, options: ReceiverOptions = {}, headers: Record<string, string> = {}): Promise<RawWsClient> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`, 'ndp.v1', { headers, perMessageDeflate: false });
    const client = new RawWsClient(ws, options);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return client;
  }

  async open(params: SessionParams, extra: { token?: string; session?: number; ticket?: string } = {}): Promise<void> {
    await this.collector.subscribe(params, extra);
  }

  close(): void {
    this.collector.stopTimer();
    this.ws.terminate();
  }
}

/** Runs a whole session to completion: waits for END, everything received, BYE complete. */
export async function runToEnd(collector: StreamCollector, timeoutMs = 60_000): Promise<void> {
  await collector.until(() => collector.bye !== undefined, timeoutMs, 'BYE complete');
}

/** GET/POST/DELETE JSON against the server's HTTP API. */
export async function http(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // metrics are text
  }
  return { status: res.status, json, headers: res.headers };
}
