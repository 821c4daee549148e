/**
 * The trainer end of the worker channel (NDP.md §11): starts a local training worker process (the
 * PyTorch worker in python/ndp_torch/, or a user's own script around `NdpBatchDataset`), hands it
 * ready batches as TENSOR frames over a Unix socket and receives its answers (msgpack worker
 * messages in CONTROL frames).
 *
 * Flow control: at most `maxInFlight` batches are sent but not yet acknowledged, and socket
 * backpressure (`write()` → false) is honoured, so neither side buffers without bound. Any broken
 * frame, a fatal worker error, a reply timeout or the worker's exit fails every pending request with
 * a stable code and the tail of what the worker wrote to stdout/stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode, encode } from '@msgpack/msgpack';
import type { Batch } from './batch.js';
import { NdpError, type NdpErrorCode } from '../src/protocol/errors.js';
import { encodeFrame, readFrameAt } from '../src/protocol/frame.js';
import { DST, MAX_PAYLOAD, SRC, TYP } from '../src/protocol/registry.js';
import { tensorFramesSize, writeTensorFrames, type NamedTensor } from './tensor-frame.js';

/** The environment variable that carries the socket path to the worker (NDP.md §11.1). */
export const WORKER_SOCKET_ENV = 'NDP_WORKER_SOCKET';
/** The folder that holds the `ndp_torch` Python package; put on the worker's PYTHONPATH. */
export const PYTHON_PACKAGE_DIR = fileURLToPath(new URL('../../python/', import.meta.url));

/** One worker message (NDP.md §11.3): a msgpack map whose key `w` names its kind. */
export interface WorkerMessage {
  readonly w: string;
  readonly id?: number;
  readonly [key: string]: unknown;
}

export interface WorkerChannelOptions {
  /** Executable and arguments of the worker process, e.g. `['python3', '-m', 'ndp_torch.worker']`. Required. */
  readonly command: readonly string[];
  /** Extra environment for the worker (PYTHONPATH gets the ndp_torch folder prepended). Defaults to none. */
  readonly env: Readonly<Record<string, string>>;
  /** How long the worker may take to connect after it starts. Defaults to 120,000 ms (torch import, CUDA init). */
  readonly connectTimeoutMs: number;
  /** How long a request may wait for its answer (and a batch for its ack). Defaults to 600,000 ms. */
  readonly replyTimeoutMs: number;
  /** Batches sent but not acknowledged at most. Defaults to 2 (one computing, one waiting). */
  readonly maxInFlight: number;
  /** How long `close()` waits for the worker to exit before it kills it. Defaults to 10,000 ms. */
  readonly closeTimeoutMs: number;
  /** Bytes of the worker's stdout/stderr kept for error messages. Defaults to 16,384. */
  readonly outputTailBytes: number;
  /** Also copy the worker's stdout/stderr to this process's stderr. Defaults to false. */
  readonly echoOutput: boolean;
  /** Largest TENSOR frame payload. Defaults to 65,535 (LEN's limit). */
  readonly maxPayload: number;
  /** Called with messages no request waits for (e.g. `result`s a user's loop reports). Defaults to ignoring them. */
  readonly onMessage: (message: WorkerMessage) => void;
}

const DEFAULTS: Omit<WorkerChannelOptions, 'command'> = {
  env: {},
  connectTimeoutMs: 120_000,
  replyTimeoutMs: 600_000,
  maxInFlight: 2,
  closeTimeoutMs: 10_000,
  outputTailBytes: 16_384,
  echoOutput: false,
  maxPayload: MAX_PAYLOAD,
  onMessage: () => {},
};

/** The tensors of a Batch on the channel, by their Hugging Face names (NDP.md §11.3). */
export function batchTensors(batch: Batch): NamedTensor[] {
  const shape = [batch.batchSize, batch.seqLen];
  return [
    { name: 'input_ids', shape, data: batch.inputIds },
    { name: 'attention_mask', shape, data: batch.attentionMask },
    { name: 'labels', shape, data: batch.labels },
    { name: 'position_ids', shape, data: batch.positionIds },
    { name: 'document_ids', shape, data: batch.documentIds },
  ];
}

function controlFrame(message: WorkerMessage): Uint8Array {
  return encodeFrame({ src: SRC.TRAINER, dst: DST.WORKER, typ: TYP.CONTROL, payload: encode(message, { ignoreUndefined: true }) });
}

/** The `batch` message and its TENSOR frames in one buffer: one socket write per batch. */
export function encodeBatchFrames(id: number, batch: Batch, mode: 'train' | 'eval', maxPayload: number = MAX_PAYLOAD): Uint8Array {
  const tensors = batchTensors(batch);
  const head = controlFrame({ w: 'batch', id, mode, tensors: tensors.map((t) => t.name), tokens: batch.tokenCount });
  let size = head.length;
  for (const tensor of tensors) size += tensorFramesSize(tensor, maxPayload);
  const out = Buffer.allocUnsafe(size);
  out.set(head, 0);
  let at = head.length;
  for (const tensor of tensors) at = writeTensorFrames(out, at, id, tensor, maxPayload);
  return out;
}

/** Keeps the last `limit` bytes of a stream (the worker's output, for error messages). */
class OutputTail {
  private chunks: Buffer[] = [];
  private bytes = 0;
  constructor(private readonly limit: number) {}
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    while (this.bytes - this.chunks[0]!.length >= this.limit) this.bytes -= this.chunks.shift()!.length;
  }
  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString('utf8').trim();
  }
}

interface Waiter {
  resolve(message: WorkerMessage): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class WorkerChannel {
  private readonly options: WorkerChannelOptions;
  private nextId = 0;
  private readonly replies = new Map<number, Waiter>();
  private readonly acks = new Map<number, NodeJS.Timeout>();
  private readonly slotWaiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private readonly drainWaiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private received: Buffer = Buffer.alloc(0);
  private failure: NdpError | undefined;
  private closing: Promise<void> | undefined;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Resolves when the worker process has ended (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    private readonly child: ChildProcess,
    private readonly socket: Socket,
    private readonly dir: string,
    private readonly tail: OutputTail,
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
    options: WorkerChannelOptions,
  ) {
    this.options = options;
    this.exited = exited.then((info) => {
      this.exitInfo = info;
      if (this.closing === undefined || this.replies.size > 0 || this.acks.size > 0) {
        const how = info.signal !== null ? `signal ${info.signal}` : `exit status ${info.code}`;
        this.fail(new NdpError('NDP_ERR_WORKER_EXITED', `training worker ended (${how})${this.tailNote()}`));
      }
      return info;
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      for (const waiter of this.drainWaiters.splice(0)) waiter.resolve();
    });
    // A socket error (EPIPE when the worker died) is reported by the process's end, which carries
    // the exit status; a worker that lives on without its socket runs into replyTimeoutMs.
    socket.on('error', () => {});
  }

  /** Starts the worker and waits until it has connected. NDP_ERR_WORKER_START when it cannot. */
  static async start(options: Partial<WorkerChannelOptions> & Pick<WorkerChannelOptions, 'command'>): Promise<WorkerChannel> {
    const resolved: WorkerChannelOptions = { ...DEFAULTS, ...options };
    const [executable, ...args] = resolved.command;
    if (executable === undefined) throw new NdpError('NDP_ERR_WORKER_START', 'empty worker command');
    if (!(resolved.maxInFlight >= 1)) throw new RangeError(`maxInFlight must be at least 1, got ${resolved.maxInFlight}`);
    const dir = await mkdtemp(join(tmpdir(), 'ndp-worker-'));
    const path = join(dir, 'channel.sock');
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    const tail = new OutputTail(resolved.outputTailBytes);
    const pythonPath = [PYTHON_PACKAGE_DIR, process.env.PYTHONPATH].filter((p) => p !== undefined && p !== '').join(delimiter);
    const child = spawn(executable, args, {
      env: { ...process.env, PYTHONPATH: pythonPath, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1', ...resolved.env, [WORKER_SOCKET_ENV]: path },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const onOutput = (chunk: Buffer): void => {
      tail.push(chunk);
      if (resolved.echoOutput) process.stderr.write(chunk);
    };
    child.stdout!.on('data', onOutput);
    child.stderr!.on('data', onOutput);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('close', (code, signal) => resolve({ code, signal }));
      child.once('error', () => resolve({ code: null, signal: null }));
    });
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      const socket = await Promise.race([
        new Promise<Socket>((resolve) => server.once('connection', resolve)),
        exited.then((info) => {
          const how = spawnError !== undefined ? spawnError.message : info.signal !== null ? `signal ${info.signal}` : `exit status ${info.code}`;
          const output = tail.text();
          throw new NdpError('NDP_ERR_WORKER_START', `worker '${resolved.command.join(' ')}' ended before it connected (${how})${output ? `:\n${output}` : ''}`);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new NdpError('NDP_ERR_WORKER_START', `worker '${resolved.command.join(' ')}' did not connect within ${resolved.connectTimeoutMs} ms`)),
            resolved.connectTimeoutMs,
          );
        }),
      ]);
      // One worker per channel: stop listening once it is there.
      server.close();
      return new WorkerChannel(child, socket, dir, tail, exited, resolved);
    } catch (err) {
      server.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The worker's process id. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Batches sent and not yet acknowledged. */
  get inFlight(): number {
    return this.acks.size;
  }

  private tailNote(): string {
    const text = this.tail.text();
    return text ? `; worker output:\n${text}` : '';
  }

  /**
   * Sends a request (`init`, `save`, …) and resolves with the worker's answer to it. `tensors`
   * (e.g. base weights with `init`) follow the message as TENSOR frames, one tensor per socket
   * write so a large model is never copied whole (NDP.md §11.3).
   */
  async request(message: { readonly w: string; readonly [key: string]: unknown }, tensors: readonly NamedTensor[] = []): Promise<WorkerMessage> {
    this.throwIfFailed();
    const id = this.nextId++;
    const reply = this.waitReply(id, message.w);
    const names = tensors.length > 0 ? { tensors: tensors.map((t) => t.name) } : {};
    await this.write(controlFrame({ ...message, ...names, id }));
    for (const tensor of tensors) {
      const out = Buffer.allocUnsafe(tensorFramesSize(tensor, this.options.maxPayload));
      writeTensorFrames(out, 0, id, tensor, this.options.maxPayload);
      await this.write(out);
    }
    return reply;
  }

  /**
   * Sends one batch once the in-flight window has room. With `expectResult` (default true) resolves
   * with the worker's `result` for it; without, resolves once it is written (its result, if the
   * worker sends one, goes to `onMessage`).
   */
  async sendBatch(batch: Batch, mode: 'train' | 'eval' = 'train', expectResult = true): Promise<WorkerMessage | undefined> {
    await this.slot();
    const id = this.nextId++;
    this.acks.set(
      id,
      setTimeout(() => this.fail(new NdpError('NDP_ERR_WORKER_TIMEOUT', `worker did not take batch ${id} within ${this.options.replyTimeoutMs} ms${this.tailNote()}`)), this.options.replyTimeoutMs).unref(),
    );
    const reply = expectResult ? this.waitReply(id, 'batch') : undefined;
    await this.write(encodeBatchFrames(id, batch, mode, this.options.maxPayload));
    return reply;
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closing !== undefined) throw new NdpError('NDP_ERR_WORKER_EXITED', 'worker channel is closed');
  }

  private slot(): Promise<void> {
    this.throwIfFailed();
    if (this.acks.size < this.options.maxInFlight) return Promise.resolve();
    return new Promise((resolve, reject) => this.slotWaiters.push({ resolve, reject }));
  }

  private write(bytes: Uint8Array): Promise<void> {
    this.throwIfFailed();
    if (this.socket.write(bytes)) return Promise.resolve();
    return new Promise((resolve, reject) => this.drainWaiters.push({ resolve, reject }));
  }

  private waitReply(id: number, what: string): Promise<WorkerMessage> {
    const reply = new Promise<WorkerMessage>((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new NdpError('NDP_ERR_WORKER_TIMEOUT', `worker did not answer '${what}' request ${id} within ${this.options.replyTimeoutMs} ms${this.tailNote()}`)),
        this.options.replyTimeoutMs,
      ).unref();
      this.replies.set(id, { resolve, reject, timer });
    });
    // When the write that should precede it fails, the caller gets that error and never awaits this
    // one: mark it handled here so its later rejection is not an unhandled one.
    reply.catch(() => {});
    return reply;
  }

  private onData(chunk: Buffer): void {
    // A partial frame waits for the next chunk; a frame is at most 65,543 bytes, so this buffer is bounded.
    this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
    let offset = 0;
    try {
      for (;;) {
        const read = readFrameAt(this.received, offset);
        if (read === undefined) break;
        offset = read.end;
        const { frame } = read;
        if (!frame.crcOk) throw new NdpError('NDP_ERR_BAD_CRC', 'CRC-16 mismatch on a frame from the worker');
        if (frame.typ !== TYP.CONTROL) throw new NdpError('NDP_ERR_WORKER_PROTOCOL', `worker sent a frame of TYP 0x${frame.typ.toString(16)}; only CONTROL flows back`);
        let message: unknown;
        try {
          message = decode(frame.payload);
        } catch (cause) {
          throw new NdpError('NDP_ERR_WORKER_PROTOCOL', `worker message is not msgpack: ${(cause as Error).message}`, { cause });
        }
        if (typeof message !== 'object' || message === null || Array.isArray(message) || typeof (message as { w?: unknown }).w !== 'string') {
          throw new NdpError('NDP_ERR_WORKER_PROTOCOL', "worker message is not a msgpack map with a string key 'w'");
        }
        this.dispatch(message as WorkerMessage);
      }
    } catch (err) {
      this.fail(err instanceof NdpError ? err : new NdpError('NDP_ERR_WORKER_PROTOCOL', String(err)));
      return;
    }
    this.received = this.received.subarray(offset);
  }

  private dispatch(message: WorkerMessage): void {
    const id = message.id;
    if (message.w === 'ack') {
      const timer = typeof id === 'number' ? this.acks.get(id) : undefined;
      if (timer === undefined) throw new NdpError('NDP_ERR_WORKER_PROTOCOL', `worker acknowledged batch ${String(id)}, which is not in flight`);
      clearTimeout(timer);
      this.acks.delete(id!);
      this.slotWaiters.shift()?.resolve();
      return;
    }
    if (message.w === 'error') {
      const code: NdpErrorCode = typeof message.code === 'string' && message.code.startsWith('NDP_ERR_') ? (message.code as NdpErrorCode) : 'NDP_ERR_WORKER_FAILED';
      const err = new NdpError(code, `training worker: ${String(message.message)}`);
      if (message.fatal === true) {
        // The worker exits by itself after a fatal error (NDP.md §11.5); close() kills it if it does not.
        this.fail(err, false);
        return;
      }
      const waiter = typeof id === 'number' ? this.replies.get(id) : undefined;
      if (waiter !== undefined) {
        clearTimeout(waiter.timer);
        this.replies.delete(id!);
        waiter.reject(err);
        return;
      }
    }
    const waiter = typeof id === 'number' ? this.replies.get(id) : undefined;
    if (waiter === undefined) {
      this.options.onMessage(message);
      return;
    }
    clearTimeout(waiter.timer);
    this.replies.delete(id!);
    waiter.resolve(message);
  }

  /** Fails every pending request with `err` and, with `kill`, stops the worker (close() awaits its exit). */
  private fail(err: NdpError, kill = true): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    for (const waiter of this.replies.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
    this.replies.clear();
    for (const timer of this.acks.values()) clearTimeout(timer);
    this.acks.clear();
    for (const waiter of this.slotWaiters.splice(0)) waiter.reject(err);
    for (const waiter of this.drainWaiters.splice(0)) waiter.reject(err);
    this.socket.destroy();
    if (kill && this.exitInfo === undefined && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  /** The error that ended the channel, if one did. */
  get error(): NdpError | undefined {
    return this.failure;
  }

  /**
   * Asks the worker to finish (`close`), waits up to `closeTimeoutMs` for it to exit, kills it
   * otherwise, and removes the socket folder. Safe to call twice; never throws.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.failure === undefined && this.exitInfo === undefined) {
        const id = this.nextId++;
        const reply = this.waitReply(id, 'close').catch(() => undefined);
        if (this.socket.write(controlFrame({ w: 'close', id }))) this.socket.end();
        else this.socket.once('drain', () => this.socket.end());
        await Promise.race([reply, this.exited, delay(this.options.closeTimeoutMs)]);
      }
      let timer: NodeJS.Timeout | undefined;
      const exitedInTime = await Promise.race([this.exited.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.options.closeTimeoutMs)))]);
      clearTimeout(timer);
      if (!exitedInTime) this.child.kill('SIGKILL');
      await this.exited;
      for (const waiter of this.replies.values()) clearTimeout(waiter.timer);
      this.socket.destroy();
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.closing;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
