/**
 * `ndp pull`: receive a stream from a data server and write every delivered sample as a JSON line
 * `{"index", "src", "dataset", "epoch", "position", "tokens", "loss_mask"}`, then the stats object
 * (the client's accounting, data-stall time, throughput). Exits non-zero with a clear message when the
 * server is unreachable, refuses, or the stream ends early.
 */
import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { connect, type ClientStatus } from '../../../client/client.js';
import type { SessionParams } from '../../protocol/control.js';
import { openPcapTap, PCAP_OPTIONS, PCAP_USAGE } from '../../capture/pcap-cli-options.js';
import type { CaptureTap } from '../../capture/tap.js';
import { codeName } from '../../protocol/registry.js';
import { intFlag } from '../int-flag.js';

export const usage = `usage: ndp pull --server URL [options]

Receives a stream of samples and writes each as a JSON line
{"index", "src", "dataset", "epoch", "position", "tokens", "loss_mask"}.

  --server URL         udp://HOST:PORT or ws://HOST:PORT / wss://… (session opened in-band),
                       or http://HOST:PORT (session opened with POST /v1/sessions)
  --transport udp|ws   data transport with an http:// URL (default udp)
  --dataset NAME       dataset to stream (repeatable; default: every dataset of the server)
  --rank R --world W   this trainer's shard (default 0 of 1)
  --epochs N           epochs to stream (default 1)
  --seed S             shuffle seed (default 0); --no-shuffle keeps dataset order
  --loss repair|lossy  repair NACKs gaps (default); lossy accounts them as lost
  --crc-drop P         CRC-Drop augmentation: drop fraction P of good frames (default 0)
  --crc-drop-seed S    seed of the CRC-Drop choice (default 0)
  --cursor E:P         start at epoch E, position P (resume a stream)
  --window N           credit window in frames (default: the server's, 1024)
  --datagram BYTES     largest frame the server may send (default 1472)
  --rate B/S           bytes per second the server may send this session (default: the server's)
  --token SECRET       bearer token for a server started with --token
  --reconnect-attempts N  resume attempts after a broken session before failing (default 10)
  --out FILE           sample JSON lines (default: standard output; '-' also means stdout)
  --stats FILE         write the final stats object (JSON) to FILE
${PCAP_USAGE}
  --quiet              no progress or summary on standard error

The final stats object is always printed on standard error (one JSON line) unless --quiet.
Exit status: 0 complete, 1 unreachable / refused / ended early, 2 bad options.`;

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        server: { type: 'string' },
        transport: { type: 'string' },
        dataset: { type: 'string', multiple: true },
        rank: { type: 'string' },
        world: { type: 'string' },
        epochs: { type: 'string' },
        seed: { type: 'string' },
        'no-shuffle': { type: 'boolean' },
        loss: { type: 'string' },
        'crc-drop': { type: 'string' },
        'crc-drop-seed': { type: 'string' },
        cursor: { type: 'string' },
        window: { type: 'string' },
        datagram: { type: 'string' },
        rate: { type: 'string' },
        token: { type: 'string' },
        'reconnect-attempts': { type: 'string' },
        out: { type: 'string' },
        stats: { type: 'string' },
        quiet: { type: 'boolean' },
        ...PCAP_OPTIONS,
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`ndp pull: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }
  const fail = (message: string): number => {
    process.stderr.write(`ndp pull: ${message}\n`);
    return 2;
  };
  if (values.server === undefined) return fail('--server URL is required');
  if (values.transport !== undefined && values.transport !== 'udp' && values.transport !== 'ws') return fail(`--transport must be udp or ws, got '${values.transport}'`);
  if (values.loss !== undefined && values.loss !== 'repair' && values.loss !== 'lossy') return fail(`--loss must be repair or lossy, got '${values.loss}'`);
  const crcDrop = values['crc-drop'] === undefined ? 0 : Number(values['crc-drop']);
  if (!(crcDrop >= 0 && crcDrop < 1)) return fail(`--crc-drop must be a number in [0, 1), got '${values['crc-drop']}'`);
  let params: SessionParams;
  let crcDropSeed: number | undefined;
  let reconnectAttempts: number | undefined;
  let tap: CaptureTap | undefined;
  try {
    let cursor: SessionParams['cursor'];
    if (values.cursor !== undefined) {
      const m = /^(\d+):(\d+)$/.exec(values.cursor);
      if (m === null) return fail(`--cursor must be EPOCH:POSITION, got '${values.cursor}'`);
      cursor = { epoch: Number(m[1]), position: Number(m[2]) };
    }
    const rank = intFlag('rank', values.rank);
    const world = intFlag('world', values.world, 1);
    const epochs = intFlag('epochs', values.epochs, 1);
    const seed = intFlag('seed', values.seed);
    const window = intFlag('window', values.window, 1);
    const datagram = intFlag('datagram', values.datagram, 1);
    const rate = intFlag('rate', values.rate, 1);
    crcDropSeed = intFlag('crc-drop-seed', values['crc-drop-seed']);
    reconnectAttempts = intFlag('reconnect-attempts', values['reconnect-attempts']);
    params = {
      ...(values.dataset !== undefined ? { sources: values.dataset.map((dataset) => ({ dataset })) } : {}),
      ...(rank !== undefined ? { rank } : {}),
      ...(world !== undefined ? { world } : {}),
      ...(epochs !== undefined ? { epochs } : {}),
      ...(seed !== undefined ? { seed } : {}),
      ...(values['no-shuffle'] ? { shuffle: false } : {}),
      ...(values.loss !== undefined ? { loss: values.loss as 'repair' | 'lossy' } : {}),
      ...(cursor !== undefined ? { cursor } : {}),
      ...(window !== undefined ? { window } : {}),
      ...(datagram !== undefined ? { datagram } : {}),
      ...(rate !== undefined ? { rate } : {}),
    };
    tap = openPcapTap(values);
  } catch (err) {
    return fail((err as Error).message);
  }

  const quiet = values.quiet === true;
  const toStdout = values.out === undefined || values.out === '-';
  const out = toStdout ? process.stdout : createWriteStream(values.out!);
  // A stream 'error' without a listener kills the process with a stack trace: an unwritable --out is
  // reported before connecting, a later write error (disk full) ends the pull with exit 1.
  let writeError: Error | undefined;
  if (!toStdout) {
    try {
      await once(out, 'open');
    } catch (err) {
      tap?.close?.();
      process.stderr.write(`ndp pull: cannot write --out: ${(err as Error).message}\n`);
      return 1;
    }
    out.on('error', (err) => (writeError ??= err));
  }
  let client;
  try {
    client = await connect(values.server, {
      params,
      ...(values.transport !== undefined ? { transport: values.transport as 'udp' | 'ws' } : {}),
      ...(values.token !== undefined ? { token: values.token } : {}),
      crcDropRate: crcDrop,
      ...(crcDropSeed !== undefined ? { crcDropSeed } : {}),
      ...(reconnectAttempts !== undefined ? { reconnect: { maxAttempts: reconnectAttempts } } : {}),
      ...(tap !== undefined ? { tap } : {}),
    });
  } catch (err) {
    tap?.close?.();
    process.stderr.write(`ndp pull: ${describe(err)}\n`);
    return 1;
  }
  if (!quiet) {
    client.on('status', (s: ClientStatus) => {
      if (s.type !== 'connected' && s.type !== 'ended') process.stderr.write(`ndp pull: ${JSON.stringify(s)}\n`);
    });
  }
  let code = 0;
  try {
    for await (const d of client.samples()) {
      const line = `{"index":${d.sample.index},"src":${JSON.stringify(codeName('src', d.src))},"dataset":${JSON.stringify(d.dataset)},"epoch":${d.epoch},"position":${d.position},"tokens":[${d.sample.tokens.join(',')}],"loss_mask":[${d.sample.lossMask.join(',')}]}\n`;
      if (!out.write(line)) await once(out, 'drain');
      if (writeError !== undefined) throw writeError;
    }
  } catch (err) {
    process.stderr.write(`ndp pull: ${describe(err)}\n`);
    code = 1;
  }
  if (!toStdout && writeError === undefined) {
    out.end();
    await once(out, 'finish').catch((err: Error) => (writeError ??= err));
  }
  if (writeError !== undefined && code === 0) {
    process.stderr.write(`ndp pull: writing --out: ${writeError.message}\n`);
    code = 1;
  }
  const stats = { ...client.stats, accept: { session: client.accept.session, samplesPerEpoch: client.accept.samplesPerEpoch, samplesTotal: client.accept.samplesTotal, params: client.accept.params } };
  const imbalance = client.accounting.imbalance();
  if (imbalance !== undefined && code === 0) {
    process.stderr.write(`ndp pull: accounting does not balance: ${imbalance}\n`);
    code = 1;
  }
  if (values.stats !== undefined) await writeFile(values.stats, JSON.stringify(stats, null, 2) + '\n');
  if (!quiet) process.stderr.write(JSON.stringify(stats) + '\n');
  await client.close().catch(() => undefined);
  tap?.close?.();
  return code;
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return `${e.code !== undefined ? `${e.code}: ` : ''}${e.message ?? String(err)}`;
}
