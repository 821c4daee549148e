/**
 * The worker channel (NDP.md §11) against real Python processes: a user's loop around
 * NdpBatchDataset (test/python/fixture_loop.py, standard library only) receives batches over a real
 * Unix socket and reports what arrived. Also every failure: crash, early exit, no connect, bad CRC,
 * mute worker, oversized tensor.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Batch } from '../../client/batch.js';
import { WorkerChannel, batchTensors, type WorkerMessage } from '../../client/worker-channel.js';
import { isNdpError } from '../../src/protocol/errors.js';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const FIXTURE = `${REPO}/test/python/fixture_loop.py`;
const PYTHON = process.env.NDP_PYTHON ?? 'python3';

function makeBatch(batchSize: number, seqLen: number, seed: number): Batch {
  const n = batchSize * seqLen;
  const inputIds = new Int32Array(n).map((_, i) => (i * 7919 + seed * 104729) % 151936);
  const attentionMask = new Int32Array(n).map((_, i) => (i % seqLen < seqLen - 2 ? 1 : 0));
  const labels = inputIds.map((id, i) => (attentionMask[i] === 1 && i % 3 !== 0 ? id : -100));
  const positionIds = new Int32Array(n).map((_, i) => i % seqLen);
  const documentIds = attentionMask.slice();
  return { batchSize, seqLen, inputIds, attentionMask, labels, positionIds, documentIds, sampleIndices: [seed], tokenCount: attentionMask.reduce((a, b) => a + b, 0) };
}

function sums(batch: Batch): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tensor of batchTensors(batch)) out[tensor.name] = Array.from(tensor.data).reduce((a, b) => a + b, 0);
  return out;
}

async function startFixture(mode: string, options: Partial<Parameters<typeof WorkerChannel.start>[0]> = {}) {
  const results: WorkerMessage[] = [];
  const channel = await WorkerChannel.start({
    command: [PYTHON, FIXTURE],
    env: { NDP_FIXTURE: mode, ...(options.env ?? {}) },
    onMessage: (m) => results.push(m),
    ...options,
  });
  return { channel, results };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!condition()) throw new Error(`timed out waiting for ${what}`);
}

t.test('batches arrive byte for byte, in order, as tensors of the right shape', async (t) => {
  const { channel, results } = await startFixture('');
  t.teardown(() => channel.close());
  const ready = await channel.request({ w: 'init' });
  t.equal(ready.w, 'ready');
  t.equal(ready.backend, 'dataset');
  const batches = [makeBatch(2, 16, 1), makeBatch(4, 300, 2), makeBatch(1, 20_000, 3)];
  for (const batch of batches) await channel.sendBatch(batch, 'train', false);
  await until(() => results.length === batches.length, 'three results');
  batches.forEach((batch, i) => {
    const result = results[i]!;
    t.equal(result.id, i + 1, 'ids count up from the init request');
    t.equal(result.rows, batch.batchSize);
    t.equal(result.cols, batch.seqLen);
    for (const [name, sum] of Object.entries(sums(batch))) t.equal(result[name], sum, `${name} of batch ${i}`);
  });
  await channel.close();
  t.equal((await channel.exited).code, 0, 'the worker exits 0 after close');
});

t.test('small maxPayload cuts tensors into many fragments that reassemble exactly', async (t) => {
  const { channel, results } = await startFixture('', { maxPayload: 100 });
  t.teardown(() => channel.close());
  const batch = makeBatch(3, 257, 9);
  await channel.sendBatch(batch, 'train', false);
  await until(() => results.length === 1, 'a result');
  t.equal(results[0]!.labels, sums(batch).labels);
});

t.test('at most maxInFlight batches are sent and not acknowledged', async (t) => {
  const { channel, results } = await startFixture('slow', { maxInFlight: 1 });
  t.teardown(() => channel.close());
  let most = 0;
  for (let i = 0; i < 4; i++) {
    await channel.sendBatch(makeBatch(2, 8, i), 'train', false);
    most = Math.max(most, channel.inFlight);
  }
  t.equal(most, 1);
  await until(() => results.length === 4, 'four results');
  t.equal(channel.inFlight, 0);
});

t.test('a worker that crashes fails pending and later requests with NDP_ERR_WORKER_EXITED and its stderr', async (t) => {
  const { channel } = await startFixture('crash');
  t.teardown(() => channel.close());
  await channel.sendBatch(makeBatch(1, 4, 0), 'train', false);
  const info = await channel.exited;
  t.equal(info.code, 7);
  const err = await channel.sendBatch(makeBatch(1, 4, 1)).catch((e: unknown) => e);
  t.ok(isNdpError(err, 'NDP_ERR_WORKER_EXITED'), String(err));
  t.match((err as Error).message, /exit status 7/);
  t.match((err as Error).message, /crashing on purpose after batch 0/);
});

t.test('outputTailBytes bounds the worker output quoted in errors', async (t) => {
  const { channel } = await startFixture('crash', { outputTailBytes: 12 });
  t.teardown(() => channel.close());
  await channel.sendBatch(makeBatch(1, 4, 0), 'train', false);
  await channel.exited;
  const err = (await channel.sendBatch(makeBatch(1, 4, 1)).catch((e: unknown) => e)) as Error;
  const quoted = err.message.split('worker output:\n')[1] ?? '';
  t.ok(quoted.length > 0 && quoted.length <= 12, JSON.stringify(quoted));
  t.ok('fixture: crashing on purpose after batch 0'.endsWith(quoted), 'the last bytes');
});

t.test('closeTimeoutMs: a worker that does not exit after close is killed', async (t) => {
  const { channel } = await startFixture('stubborn', { closeTimeoutMs: 200 });
  await channel.close();
  t.equal((await channel.exited).signal, 'SIGKILL');
});

t.test('a worker that exits before it connects is NDP_ERR_WORKER_START with its output', async (t) => {
  const err = await startFixture('exit-early').catch((e: unknown) => e);
  t.ok(isNdpError(err, 'NDP_ERR_WORKER_START'), String(err));
  t.match((err as Error).message, /exit status 5/);
  t.match((err as Error).message, /refusing to start/);
});

t.test('a worker that never connects is NDP_ERR_WORKER_START after connectTimeoutMs, and is killed', async (t) => {
  const err = await startFixture('no-connect', { connectTimeoutMs: 300 }).catch((e: unknown) => e);
  t.ok(isNdpError(err, 'NDP_ERR_WORKER_START'), String(err));
  t.match((err as Error).message, /did not connect within 300 ms/);
});

t.test('a missing executable is NDP_ERR_WORKER_START', async (t) => {
  const err = await WorkerChannel.start({ command: ['/nonexistent/python-for-ndp'] }).catch((e: unknown) => e);
  t.ok(isNdpError(err, 'NDP_ERR_WORKER_START'), String(err));
  t.match((err as Error).message, /ENOENT/);
});

t.test('a corrupted frame from the worker is NDP_ERR_BAD_CRC and ends the channel', async (t) => {
  const { channel } = await startFixture('bad-crc');
  t.teardown(() => channel.close());
  const err = await channel.sendBatch(makeBatch(1, 4, 0)).catch((e: unknown) => e);
  t.ok(isNdpError(err, 'NDP_ERR_BAD_CRC'), String(err));
  t.ok(isNdpError(channel.error, 'NDP_ERR_BAD_CRC'));
  await channel.exited;
});

t.test('a worker that never answers is NDP_ERR_WORKER_TIMEOUT after replyTimeoutMs', async (t) => {
  const { channel } = await startFixture('mute', { replyTimeoutMs: 300 });
  t.teardown(() => channel.close());
  const err = await channel.request({ w: 'init' }).catch((e: unknown) => e);
  t.ok(isNdpError(err, 'NDP_ERR_WORKER_TIMEOUT'), String(err));
});

t.test("the worker's own limit: a tensor over max_tensor_bytes comes back as a fatal NDP_ERR_BAD_TENSOR", async (t) => {
  const { channel } = await startFixture('', { env: { NDP_FIXTURE_MAX_TENSOR_BYTES: String(2 * 8 * 4) } });
  t.teardown(() => channel.close());
  await channel.sendBatch(makeBatch(2, 8, 0), 'train', false);
  const err = await channel.sendBatch(makeBatch(2, 9, 1)).catch((e: unknown) => e);
  t.ok(isNdpError(err, 'NDP_ERR_BAD_TENSOR'), String(err));
  t.match((err as Error).message, /72 bytes exceeds the limit of 64/);
  t.equal((await channel.exited).code, 3);
});

t.test('close() is safe twice and removes the socket folder', async (t) => {
  const { channel } = await startFixture('');
  const dir = (channel as unknown as { dir: string }).dir;
  t.ok(existsSync(dir));
  await Promise.all([channel.close(), channel.close()]);
  t.notOk(existsSync(dir));
});
