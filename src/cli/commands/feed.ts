/**
 * `ndp feed`: hands the batches of an ndp stream (or a local .ndp file) to the user's own training
 * script over the worker channel (NDP.md §11). The client does all transport work; the script
 * iterates `ndp_torch.NdpBatchDataset` and may `report()` metrics, printed here as JSON lines.
 */
import { parseArgs } from 'node:util';
import type { Batch } from '../../../client/batch.js';
import { connect } from '../../../client/client.js';
import { fileBatches } from '../../../client/trainer/file-batches.js';
import { WorkerChannel, type WorkerMessage } from '../../../client/worker-channel.js';
import { openNdpFile } from '../../dataset/ndp-file.js';
import { NdpError, isNdpError } from '../../protocol/errors.js';

export const usage = `usage: ndp feed (--server URL | --data FILE.ndp) [options] -- COMMAND [ARGS...]

Starts COMMAND (your training script) with NDP_WORKER_SOCKET set and python/ on its PYTHONPATH, and
hands it every batch over the worker channel (NDP.md §11): int32 [B, T] tensors input_ids,
attention_mask, labels (-100 = not trained on), position_ids, document_ids, as TENSOR frames over a
Unix socket. The script reads them with ndp_torch.NdpBatchDataset; what it report()s is printed
on standard output as JSON lines {"batch", ...metrics}.

  --server URL          ndp server (udp://host:port, ws://host:port/…, http://host:port)
  --transport udp|ws    data transport with an http:// URL (default udp)
  --data FILE           a local .ndp file instead of a server
  --epochs N            epochs to stream (default 1)
  --seed S              shuffle seed of the server session (default 0)
  --batch B             rows per batch (default 4)
  --seq T               tokens per row (default 128)
  --packing             pack several samples per row
  --max-batches N       stop after N batches (default 0: until the stream ends)
  --max-in-flight N     batches sent but not yet taken by the script (default 2)
  --connect-timeout-ms  how long the script may take to connect (default 120000)

Exit status: 0 the stream ended (or --max-batches, or the script stopped on its own with status 0),
1 the script failed (its exit status and last output are shown) or the data source failed, 2 bad usage
(NDP_ERR_BAD_FEED_OPTION for a bad flag value).`;

function int(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new NdpError('NDP_ERR_BAD_FEED_OPTION', `--${name} must be an integer ≥ ${min}, got '${text}'`);
  return n;
}

interface FeedOptions {
  readonly command: string[];
  readonly server: string | undefined;
  readonly data: string | undefined;
  readonly transport: 'udp' | 'ws';
  readonly seed: number;
  readonly batchSize: number;
  readonly seqLen: number;
  readonly epochs: number;
  readonly maxBatches: number;
  readonly packing: boolean;
  readonly maxInFlight: number;
  readonly connectTimeoutMs: number;
}

/** The flags, or undefined when the command line is not a feed command at all (usage); throws NDP_ERR_BAD_FEED_OPTION for a bad value. */
function parseFeedArgs(argv: string[]): FeedOptions | undefined {
  const split = argv.indexOf('--');
  const command = split >= 0 ? argv.slice(split + 1) : [];
  const { values } = parseArgs({
    args: split >= 0 ? argv.slice(0, split) : argv,
    options: {
      server: { type: 'string' },
      transport: { type: 'string' },
      data: { type: 'string' },
      epochs: { type: 'string' },
      seed: { type: 'string' },
      batch: { type: 'string' },
      seq: { type: 'string' },
      packing: { type: 'boolean' },
      'max-batches': { type: 'string' },
      'max-in-flight': { type: 'string' },
      'connect-timeout-ms': { type: 'string' },
    },
  });
  if (command.length === 0 || (values.server === undefined) === (values.data === undefined)) return undefined;
  const transport = values.transport ?? 'udp';
  if (transport !== 'udp' && transport !== 'ws') throw new NdpError('NDP_ERR_BAD_FEED_OPTION', `--transport must be udp or ws, got '${transport}'`);
  return {
    command,
    server: values.server,
    data: values.data,
    transport,
    seed: int('seed', values.seed, 0, 0),
    batchSize: int('batch', values.batch, 4, 1),
    seqLen: int('seq', values.seq, 128, 1),
    epochs: int('epochs', values.epochs, 1, 1),
    maxBatches: int('max-batches', values['max-batches'], 0, 0),
    packing: values.packing === true,
    maxInFlight: int('max-in-flight', values['max-in-flight'], 2, 1),
    connectTimeoutMs: int('connect-timeout-ms', values['connect-timeout-ms'], 120_000, 1),
  };
}

export async function run(argv: string[]): Promise<number> {
  let options: FeedOptions | undefined;
  try {
    options = parseFeedArgs(argv);
  } catch (err) {
    if (!isNdpError(err, 'NDP_ERR_BAD_FEED_OPTION')) throw err;
    process.stderr.write(`ndp feed: ${err.code}: ${err.message}\n`);
    return 2;
  }
  if (options === undefined) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  const { command, batchSize, seqLen, epochs, maxBatches, packing } = options;

  let batches: AsyncIterable<Batch>;
  let closeSource: () => Promise<void>;
  if (options.data !== undefined) {
    const file = await openNdpFile(options.data);
    batches = fileBatches(file, { batchSize, seqLen, packing, epochs, dropLast: false });
    closeSource = () => file.close();
  } else {
    const client = await connect(options.server!, { transport: options.transport, params: { epochs, seed: options.seed } });
    batches = client.batches({ batchSize, seqLen, packing, equalSteps: false });
    closeSource = () => client.close();
  }

  let channel: WorkerChannel;
  try {
    channel = await WorkerChannel.start({
      command,
      echoOutput: true,
      maxInFlight: options.maxInFlight,
      connectTimeoutMs: options.connectTimeoutMs,
      onMessage: (m: WorkerMessage) => {
        if (m.w !== 'result') return;
        // Batches are the channel's only requests here, so a result's id is the batch's ordinal from 0.
        const { w: _w, id, ...metrics } = m;
        process.stdout.write(JSON.stringify({ batch: id ?? null, ...metrics }) + '\n');
      },
    });
  } catch (err) {
    // The session or file is already open: close it, or a server keeps streaming into the void.
    await closeSource();
    throw err;
  }
  const started = performance.now();
  let sent = 0;
  let tokens = 0;
  let stallMs = 0;
  let status = 0;
  try {
    const iterator = batches[Symbol.asyncIterator]();
    while (maxBatches === 0 || sent < maxBatches) {
      const waitStart = performance.now();
      const next = await iterator.next();
      stallMs += performance.now() - waitStart;
      if (next.done === true) break;
      await channel.sendBatch(next.value, 'train', false);
      sent++;
      tokens += next.value.tokenCount;
    }
    await iterator.return?.();
  } catch (err) {
    const exit = channel.error !== undefined ? await channel.exited : undefined;
    if (!(isNdpError(err, 'NDP_ERR_WORKER_EXITED') && exit?.code === 0)) {
      process.stderr.write(`ndp feed: ${(err as NdpError).code ?? ''} ${(err as Error).message}\n`);
      status = 1;
    }
  } finally {
    await channel.close();
    await closeSource();
  }
  const exit = await channel.exited;
  if (exit.code !== 0 && status === 0) {
    process.stderr.write(`ndp feed: the script ended with ${exit.signal ?? `status ${exit.code}`}\n`);
    status = 1;
  }
  const seconds = (performance.now() - started) / 1000;
  process.stderr.write(`ndp feed: ${sent} batches, ${tokens} tokens in ${seconds.toFixed(1)} s (${Math.round(tokens / seconds)} tokens/s), waited ${stallMs.toFixed(0)} ms for data\n`);
  return status;
}
