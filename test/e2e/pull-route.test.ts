/**
 * DST dispatch against a server routing rule (NDP.md §7.11): frames of one dataset rerouted to DST
 * LORA reach the client's LORA handler; they are not NACKed (repair would resend the same DST
 * forever), and their samples are dropped `unrouted`; the other dataset's samples arrive whole.
 */
import t from 'tap';
import { join } from 'node:path';
import { connect } from '../../client/client.js';
import { DST, SRC } from '../../src/protocol/registry.js';
import { startServer, tempDir, writeDataset } from '../client/fixtures.js';

t.test('frames routed to LORA go to the LORA handler; EMBEDDING samples are delivered', async (t) => {
  const dir = tempDir(t);
  const text = join(dir, 'text.ndp');
  const code = join(dir, 'code.ndp');
  await writeDataset(text, 'text', 40, 900, 1, SRC.TEXT_CORPUS);
  await writeDataset(code, 'code', 30, 900, 2, SRC.CODE_REPO);
  const server = await startServer(t, [text, code], ['--route', 'src=CODE_REPO,action=set-dst:LORA']);
  let loraFrames = 0;
  const client = await connect(`udp://127.0.0.1:${server.udp}`, { handlers: new Map([[DST.LORA, () => void loraFrames++]]) });
  const datasets = new Map<string, number>();
  for await (const d of client.samples()) datasets.set(d.dataset, (datasets.get(d.dataset) ?? 0) + 1);
  const s = client.stats;
  t.same([...datasets], [['text', 40]], 'every EMBEDDING sample, nothing of the rerouted dataset');
  t.equal(s.samples.dropped.unrouted, 30, 'the rerouted samples are dropped unrouted');
  t.ok(loraFrames >= 30, `the LORA handler got ${loraFrames} frames`);
  t.equal(s.frames.nacked, 0, 'rerouted seqs are not NACKed');
  t.equal(client.accounting.imbalance(), undefined);
  await client.close();
});
