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
1 the script failed (its exit status and last output are shown) or the data source failed, 2 bad usage.`;

function int(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new NdpError('NDP_ERR_BAD_FEED_OPTION', `--${name} must be an integer ≥ ${min}, got '${text}'`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
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
  if (command.length === 0 || (values.server === undefined) === (values.data === undefined)) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  const batchSize = int('batch', values.batch, 4, 1);
  const seqLen = int('seq', values.seq, 128, 1);
  const epochs = int('epochs', values.epochs, 1, 1);
  const maxBatches = int('max-batches', values['max-batches'], 0, 0);
  const packing = values.packing === true;

  let batches: AsyncIterable<Batch>;
  let closeSource: () => Promise<void>;
  if (values.data !== undefined) {
    const file = await openNdpFile(values.data);
    batches = fileBatches(file, { batchSize, seqLen, packing, epochs, dropLast: false });
    closeSource = () => file.close();
  } else {
    const transport = values.transport === 'ws' ? 'ws' : 'udp';
    const client = await connect(values.server!, { transport, params: { epochs, seed: int('seed', values.seed, 0, 0) } });
    batches = client.batches({ batchSize, seqLen, packing, equalSteps: false });
    closeSource = () => client.close();
  }

  const channel = await WorkerChannel.start({
    command,
    echoOutput: true,
    maxInFlight: int('max-in-flight', values['max-in-flight'], 2, 1),
    connectTimeoutMs: int('connect-timeout-ms', values['connect-timeout-ms'], 120_000, 1),
    onMessage: (m: WorkerMessage) => {
      if (m.w !== 'result') return;
      // Batches are the channel's only requests here, so a result's id is the batch's ordinal from 0.
      const { w: _w, id, ...metrics } = m;
      process.stdout.write(JSON.stringify({ batch: id ?? null, ...metrics }) + '\n');
    },
  });
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
