/**
 * Client limits at their edge against a real server: a consumer that stops reading holds at most
 * maxBufferedSamples plus one credit window (the server stalls instead), and catches up losslessly;
 * a consumer that breaks out of batches() early does not hang the client.
 */
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { connect } from '../../client/client.js';
import { startServer, tempDir, writeDataset } from '../client/fixtures.js';

t.test('a stopped consumer: buffering stops at maxBufferedSamples + one window, then the stream completes', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  // Samples of at most 300 tokens (≤ 1 frame each), so a window of 16 frames is ≤ 16 samples.
  await writeDataset(file, 'data', 300, 300);
  const server = await startServer(t, [file]);
  const client = await connect(`udp://127.0.0.1:${server.udp}`, { params: { window: 16 }, maxBufferedSamples: 8 });
  await sleep(600);
  const held = client.stats.buffered;
  t.ok(held >= 8, `the client filled its buffer (${held})`);
  t.ok(held <= 8 + 16, `and stopped there: ${held} ≤ maxBufferedSamples + window`);
  let n = 0;
  for await (const d of client.samples()) {
    void d;
    n++;
  }
  t.equal(n, 300, 'then every sample arrives');
  t.equal(client.accounting.imbalance(), undefined);
  await client.close();
});

t.test('breaking out of batches() early returns promptly and close() ends the session', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'data.ndp');
  await writeDataset(file, 'data', 200, 300);
  const server = await startServer(t, [file]);
  const client = await connect(`ws://127.0.0.1:${server.ws}`, { params: { epochs: 50 } });
  let seen = 0;
  for await (const b of client.batches({ batchSize: 4, seqLen: 128, prefetch: 2 })) {
    seen += b.sampleIndices.length;
    if (seen >= 40) break;
  }
  t.equal(seen, 40);
  t.same(client.cursor, { epoch: 0, position: 40 }, 'the cursor is after the last batch taken');
  await client.close();
  t.pass('closed');
});
