/**
 * What a hostile or broken peer can do to a real `ndp serve` (NDP.md §7.3, §7.5, §7.13): never get
 * more than 3× what it sent before proving its address, be rate-limited at the handshake limit, be
 * refused without the token, have garbage counted by reason while the server keeps serving, and,
 * as a WebSocket reader that stops reading, hold only a bounded amount of server memory.
 */
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import WebSocket from 'ws';
import { encodeControlFrame, type ControlMessage } from '../../src/protocol/control.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { CONTROL, DST, SRC, TYP } from '../../src/protocol/registry.js';
import { RawUdpClient, RawWsClient, http, makeDataset, runToEnd, startServer, tempDir } from '../server/helpers.js';

async function rawSocket(t: { teardown(fn: () => unknown): void }): Promise<{ socket: dgram.Socket; received: Buffer[]; bytesIn: () => number }> {
  const socket = dgram.createSocket('udp4');
  const received: Buffer[] = [];
  socket.on('message', (m) => received.push(m));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  t.teardown(() => socket.close());
  return { socket, received, bytesIn: () => received.reduce((a, m) => a + m.length, 0) };
}

const settle = (ms = 300) => new Promise((r) => setTimeout(r, ms));

t.test('an unvalidated UDP peer never gets more than 3x what it sent; handshakes are rate-limited', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 10);
  const server = await startServer(t, [file], ['--max-handshakes', '1000']);
  const port = server.ready.udp!;
  const { socket, received, bytesIn } = await rawSocket(t);
  let bytesOut = 0;
  const send = (frame: Uint8Array) => {
    bytesOut += frame.length;
    socket.send(frame, port, '127.0.0.1');
  };
  // A short HELLO gets nothing: its COOKIE could amplify.
  send(encodeControlFrame({ t: CONTROL.HELLO, version: 1 }, SRC.TRAINER));
  await settle();
  t.equal(received.length, 0, 'HELLO under 256 bytes: no reply');
  // Tiny SUBSCRIBEs without a cookie each deserve a REJECT several times their size: the 3x budget caps the replies.
  for (let i = 0; i < 300; i++) send(encodeControlFrame({ t: CONTROL.SUBSCRIBE, nonce: i } as ControlMessage, SRC.TRAINER));
  await settle(500);
  t.ok(received.length > 0, 'some REJECTs were affordable');
  t.ok(received.length < 300, `but not all (${received.length} of 300)`);
  t.ok(bytesIn() <= 3 * bytesOut, `received ${bytesIn()} B <= 3 x ${bytesOut} B sent`);
  const health = await http(server.baseUrl, 'GET', '/healthz');
  t.equal(health.json.drops.short_hello, 1, 'short HELLO counted');
  t.equal(health.json.drops.amplification, 300 - received.length, 'every suppressed reply counted as amplification');
  t.equal(await server.stop(), 0);
});

t.test('handshakes per IP above --max-handshakes are dropped and counted', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 10);
  const server = await startServer(t, [file], ['--max-handshakes', '5']);
  const client = new RawUdpClient(server.ready.udp!);
  await client.bind();
  t.teardown(() => client.close());
  for (let i = 0; i < 8; i++) client.hello();
  await settle();
  t.equal(client.inbox.filter((m) => m.t === CONTROL.COOKIE).length, 5, 'exactly the limit answered');
  const health = await http(server.baseUrl, 'GET', '/healthz');
  t.equal(health.json.drops.handshake_rate, 3, 'the rest counted as handshake_rate');
  t.equal(await server.stop(), 0);
});

t.test('--token: refused without it or with a wrong one on HTTP, UDP and WebSocket', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 10);
  const server = await startServer(t, [file], ['--token', 's3cret']);
  const none = await http(server.baseUrl, 'GET', '/v1/datasets');
  t.equal(none.status, 401);
  t.equal(none.json.error.code, 'NDP_ERR_UNAUTHORIZED');
  t.equal(none.headers.get('www-authenticate'), 'Bearer');
  t.equal((await http(server.baseUrl, 'GET', '/v1/datasets', undefined, { authorization: 'Bearer nope' })).status, 401);
  t.equal((await http(server.baseUrl, 'POST', '/v1/sessions', {}, { authorization: 'Bearer nope' })).status, 401);
  t.equal((await http(server.baseUrl, 'GET', '/v1/datasets', undefined, { authorization: 'Bearer s3cret' })).status, 200);

  for (const token of [undefined, 'nope']) {
    const udp = new RawUdpClient(server.ready.udp!);
    await udp.bind();
    await udp.open({}, token === undefined ? {} : { token });
    t.equal(udp.collector.reject?.code, 'NDP_ERR_UNAUTHORIZED', `UDP HELLO with ${token ?? 'no'} token refused`);
    udp.close();
  }
  const good = new RawUdpClient(server.ready.udp!);
  await good.bind();
  good.hello('s3cret');
  await good.collector.until(() => good.cookie !== undefined, 3000, 'COOKIE');
  good.collector.control({ t: CONTROL.SUBSCRIBE, nonce: 1, cookie: good.cookie } as ControlMessage);
  await good.collector.until(() => good.collector.reject !== undefined, 3000, 'REJECT');
  t.equal(good.collector.reject?.code, 'NDP_ERR_UNAUTHORIZED', 'SUBSCRIBE without the token refused even after a cookie');
  good.collector.reject = undefined;
  good.collector.control({ t: CONTROL.SUBSCRIBE, nonce: 2, cookie: good.cookie, token: 's3cret', params: {} } as ControlMessage);
  await runToEnd(good.collector);
  t.equal(good.collector.samples.length, 10, 'the right token streams');
  good.close();

  const ws = await RawWsClient.connect(server.ready.ws!);
  await ws.open({});
  t.equal(ws.collector.reject?.code, 'NDP_ERR_UNAUTHORIZED');
  await ws.closed;
  t.equal(ws.closeCode, 4401, 'WebSocket closed 4401');
  const wrongBearer = new WebSocket(`ws://127.0.0.1:${server.ready.ws}/v1/stream`, 'ndp.v1', { headers: { authorization: 'Bearer nope' } });
  const status = await new Promise<number>((resolve) => wrongBearer.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
  t.equal(status, 401, 'wrong bearer refused before the upgrade');
  const bearer = await RawWsClient.connect(server.ready.ws!, {}, { authorization: 'Bearer s3cret' });
  await bearer.open({});
  await runToEnd(bearer.collector);
  t.equal(bearer.collector.samples.length, 10, 'bearer on the upgrade is enough');
  bearer.close();
  t.equal(await server.stop(), 0);
});

t.test('garbage datagrams and messages are counted by reason; the server keeps serving', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 30);
  const server = await startServer(t, [file]);
  const port = server.ready.udp!;
  const { socket } = await rawSocket(t);
  const send = (b: Uint8Array) => socket.send(b, port, '127.0.0.1');
  send(Buffer.from('GET / HTTP/1.1\r\n\r\n')); // bad_magic
  send(Uint8Array.of(0xaa, 1, 2)); // truncated
  const good = encodeControlFrame({ t: CONTROL.HEARTBEAT, session: 1 }, SRC.TRAINER);
  send(Buffer.concat([good, Buffer.from([0])])); // trailing_bytes
  const badCrc = Uint8Array.from(good);
  badCrc[badCrc.length - 1]! ^= 1;
  send(badCrc); // bad_crc
  send(encodeFrame({ src: SRC.TRAINER, dst: DST.EMBEDDING, typ: TYP.TOKEN_IDS, payload: new Uint8Array(8) })); // unexpected_frame
  send(encodeFrame({ src: SRC.TRAINER, dst: DST.CONTROL, typ: TYP.CONTROL, payload: Uint8Array.of(0xc1) })); // bad_control
  send(encodeFrame({ src: SRC.TRAINER, dst: DST.CONTROL, typ: TYP.CONTROL, payload: Uint8Array.of(0x81, 0xa1, 0x74, 0x63) })); // unknown_control ({t: 99})
  send(encodeControlFrame({ t: CONTROL.CREDIT, session: 12345, ack: 0, window: 1 }, SRC.TRAINER)); // unknown_session
  send(encodeControlFrame({ t: CONTROL.CREDIT, session: 'x', ack: 0, window: 1 } as unknown as ControlMessage, SRC.TRAINER)); // bad_control
  await settle();
  const health = await http(server.baseUrl, 'GET', '/healthz');
  t.same(health.json.drops, { bad_magic: 1, truncated: 1, trailing_bytes: 1, bad_crc: 1, unexpected_frame: 1, bad_control: 2, unknown_control: 1, unknown_session: 1 }, 'each counted under its reason');
  const metrics = await http(server.baseUrl, 'GET', '/metrics');
  t.match(metrics.json, /ndp_drops_total\{reason="bad_magic"\} 1/);

  // A session's CREDIT from another address is foreign.
  const client = new RawUdpClient(port);
  await client.bind();
  await client.open({});
  send(encodeControlFrame({ t: CONTROL.CREDIT, session: client.collector.session, ack: 0, window: 1 }, SRC.TRAINER));
  await runToEnd(client.collector);
  t.equal(client.collector.samples.length, 30, 'a real session still streams completely');
  client.close();
  t.equal((await http(server.baseUrl, 'GET', '/healthz')).json.drops.foreign, 1, 'foreign CREDIT counted');

  // WebSocket: text → 1003; a partial frame → 1002; an oversized message → 1009.
  for (const [payload, code, reason] of [
    ['hello', 1003, 'NDP_ERR_TEXT_MESSAGE'],
    [Buffer.from([0xaa, 1, 2, 3, 0, 9]), 1002, 'NDP_ERR_TRUNCATED'],
    [Buffer.alloc(70_000, 0xaa), 1009, ''],
  ] as const) {
    const ws = await RawWsClient.connect(server.ready.ws!);
    ws.ws.send(payload);
    await ws.closed;
    t.equal(ws.closeCode, code, `WebSocket ${reason || 'oversized'} closed ${code}`);
    if (reason !== '') t.equal(ws.closeReason, reason);
  }
  t.equal(await server.stop(), 0, 'server survived all of it and exits cleanly');
});

t.test('a WebSocket reader that stops reading holds bounded server memory, then idles out', async (t) => {
  const dir = await tempDir(t);
  // ~24 MB of samples: more than the kernel's socket buffers can absorb.
  const file = await makeDataset(dir, 'big', 3000, SRC.TEXT_CORPUS, 0, 2000);
  const highWater = 256 * 1024;
  const message = 64 * 1024;
  const rtx = 1024 * 1024;
  const server = await startServer(t, [file], ['--ws-high-water', String(highWater), '--ws-message-bytes', String(message), '--retransmit-bytes', String(rtx), '--idle-timeout', '2500', '--heartbeat', '500']);
  const ws = await RawWsClient.connect(server.ready.ws!, { window: 8192 });
  await ws.open({ window: 8192, rate: 0, datagram: 65_000, loss: 'repair' });
  const session = ws.collector.session;
  // Stop reading: the kernel buffers fill, then the server's.
  (ws.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  let maxTransport = 0;
  let maxRetransmit = 0;
  let lastSent = -1;
  let state = '';
  // The client keeps granting credit while it does not read (the worst case): only the server's
  // own bounds hold memory down.
  for (let i = 0; i < 15; i++) {
    await settle(100);
    const info = (await http(server.baseUrl, 'GET', `/v1/sessions/${session}`)).json;
    state = info.state;
    maxTransport = Math.max(maxTransport, info.buffered.transport);
    maxRetransmit = Math.max(maxRetransmit, info.buffered.retransmit);
    lastSent = info.sent.bytes;
  }
  t.ok(maxTransport > 0, `the server did queue (${maxTransport} B)`);
  t.ok(maxTransport <= highWater + message + 65_000, `transport queue stayed under high-water + one message (${maxTransport} <= ${highWater + message + 65_000})`);
  t.ok(maxRetransmit <= rtx, `retransmit buffer stayed under --retransmit-bytes (${maxRetransmit})`);
  t.ok(lastSent < 20_000_000, `the server stopped sending (${lastSent} B of ~24 MB)`);
  t.equal(state, 'open', 'still open while the client talks');
  // Then the client goes silent too: the idle timeout ends the session.
  ws.collector.stopTimer();
  for (let i = 0; i < 40 && state !== 'closed'; i++) {
    await settle(100);
    state = (await http(server.baseUrl, 'GET', `/v1/sessions/${session}`)).json.state;
  }
  t.equal(state, 'closed', 'the silent reader was closed by the idle timeout');
  ws.close();
  t.equal(await server.stop(), 0);
});

t.test('TCP connections above --max-connections are closed on accept and counted; a freed slot is usable', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 10);
  const server = await startServer(t, [file], ['--max-connections', '2']);
  const port = server.ready.ws!;
  const connect = () =>
    new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
      socket.once('error', reject);
    });
  const closed = (socket: net.Socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const held = [await connect(), await connect()];
  t.teardown(() => held.forEach((s) => s.destroy()));
  await settle();
  const third = await connect();
  third.on('error', () => undefined);
  const wasClosed = await Promise.race([closed(third).then(() => true), settle(5_000).then(() => false)]);
  t.ok(wasClosed, 'the connection over the limit was closed by the server');
  third.destroy();
  const health = await http(server.baseUrl, 'GET', '/healthz');
  t.equal(health.json.drops.too_many_connections, 1, 'counted under too_many_connections');
  held[0]!.destroy();
  await settle();
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`, 'ndp.v1');
  const opened = await new Promise<boolean>((resolve) => {
    ws.once('open', () => resolve(true));
    ws.once('error', () => resolve(false));
    ws.once('close', () => resolve(false));
  });
  t.ok(opened, 'a WebSocket takes the slot a closed connection freed');
  ws.terminate();
  // held[1] never upgraded: SIGTERM must still close it and exit cleanly, not wait for Node's header timeout.
  t.equal(await server.stop(), 0, 'shutdown with a connection that never upgraded exits 0');
});

t.test('STATS whose counters are not a flat map of numbers is dropped as bad_control; a good one is shown', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 10);
  const server = await startServer(t, [file]);
  // holdAck: the session never completes, so it is still open when the STATS arrive.
  const client = await RawWsClient.connect(server.ready.ws!, { holdAck: true });
  t.teardown(() => client.close());
  await client.open({});
  const session = client.collector.session;
  const stats = (counters: unknown) => client.collector.control({ t: CONTROL.STATS, session, counters } as unknown as ControlMessage);
  stats({ samples: 'many' });
  stats([1, 2]);
  stats({ nested: { a: 1 } });
  stats(7);
  stats({ samples: 9, frames: 12 });
  await settle();
  const health = await http(server.baseUrl, 'GET', '/healthz');
  t.equal(health.json.drops.bad_control, 4, 'each malformed STATS counted');
  const info = await http(server.baseUrl, 'GET', `/v1/sessions/${session}`);
  t.same(info.json.clientStats, { samples: 9, frames: 12 }, 'only the well-formed STATS is kept');
  client.close();
  t.equal(await server.stop(), 0);
});
