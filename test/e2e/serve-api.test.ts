/**
 * The HTTP control plane of a real `ndp serve` (NDP.md §7.10) and its limits at the limit (§7.13):
 * datasets, sessions opened over HTTP and attached with a ticket, GET/DELETE, statuses and error
 * bodies, /healthz, /metrics; --max-sessions, rate/window/datagram clamps, retransmit-buffer
 * eviction answered with GONE, ticket expiry, handshake timeout.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { CONTROL, DST, SRC } from '../../src/protocol/registry.js';
import type { ControlMessage } from '../../src/protocol/control.js';
import { CLI, RawUdpClient, RawWsClient, http, makeDataset, runToEnd, startServer, tempDir } from '../server/helpers.js';

const settle = (ms = 300) => new Promise((r) => setTimeout(r, ms));

t.test('HTTP API: datasets, sessions, errors, health, metrics', async (t) => {
  const dir = await tempDir(t);
  const a = await makeDataset(dir, 'code', 40, SRC.CODE_REPO);
  const b = await makeDataset(dir, 'chat', 10, SRC.CHAT);
  const server = await startServer(t, [a, b], ['--ticket-ttl', '600']);
  const base = server.baseUrl;

  const datasets = await http(base, 'GET', '/v1/datasets');
  t.equal(datasets.status, 200);
  t.same(datasets.json.datasets.map((d: { name: string; src: number; srcName: string; samples: number }) => [d.name, d.src, d.srcName, d.samples]), [['code', SRC.CODE_REPO, 'CODE_REPO', 40], ['chat', SRC.CHAT, 'CHAT', 10]]);
  t.ok(datasets.json.datasets[0].tokens > 0 && datasets.json.datasets[0].tokenizer.name === 'test', 'tokens and tokenizer identity');

  const created = await http(base, 'POST', '/v1/sessions', { sources: [{ dataset: 'chat' }], dst: 'LORA' });
  t.equal(created.status, 201);
  t.equal(created.headers.get('location'), `/v1/sessions/${created.json.session}`);
  t.match(created.json, { samplesPerEpoch: 10, samplesTotal: 10, ticket: /^[0-9a-f]{32}$/, endpoints: { udp: `udp://127.0.0.1:${server.ready.udp}`, ws: `ws://127.0.0.1:${server.ready.ws}/v1/stream` } });
  t.equal(created.json.params.dst, DST.LORA, 'dst by registry name resolved');
  t.equal((await http(base, 'GET', `/v1/sessions/${created.json.session}`)).json.state, 'pending');

  const ws = await RawWsClient.connect(server.ready.ws!);
  await ws.open({}, { session: created.json.session, ticket: created.json.ticket });
  t.equal(ws.collector.session, created.json.session, 'attached to the session opened over HTTP');
  t.same(ws.collector.accept!.sources, created.json.sources, 'ACCEPT matches the POST reply');
  await runToEnd(ws.collector);
  t.equal(ws.collector.samples.length, 10);
  t.ok(ws.collector.samples.every((s) => s.dst === DST.LORA && s.src === SRC.CHAT), 'frames carry the DST asked for');
  ws.close();
  const info = await http(base, 'GET', `/v1/sessions/${created.json.session}`);
  t.match(info.json, { state: 'closed', transport: 'ws', sent: { samples: 10 }, perSource: [{ dataset: 'chat', samples: 10, share: 1 }] });

  const again = await RawWsClient.connect(server.ready.ws!);
  await again.open({}, { session: created.json.session, ticket: created.json.ticket });
  t.equal(again.collector.reject?.code, 'NDP_ERR_BAD_TICKET', 'a ticket attaches once');
  await again.closed;
  t.equal(again.closeCode, 4400);

  const expiring = await http(base, 'POST', '/v1/sessions', {});
  await settle(1200);
  t.equal((await http(base, 'GET', `/v1/sessions/${expiring.json.session}`)).json.state, 'closed', 'unattached session expires after --ticket-ttl');

  const cases: Array<[string, string, unknown, Record<string, string>, number, string]> = [
    ['POST', '/v1/sessions', '{not json', {}, 400, 'NDP_ERR_BAD_JSON'],
    ['POST', '/v1/sessions', '{}', { 'content-type': 'text/plain' }, 415, 'NDP_ERR_BAD_JSON'],
    ['POST', '/v1/sessions', { world: 0 }, {}, 400, 'NDP_ERR_BAD_PARAMS'],
    ['POST', '/v1/sessions', { rank: 2, world: 2 }, {}, 400, 'NDP_ERR_BAD_PARAMS'],
    ['POST', '/v1/sessions', { colour: 'red' }, {}, 400, 'NDP_ERR_BAD_PARAMS'],
    ['POST', '/v1/sessions', { datagram: 100 }, {}, 400, 'NDP_ERR_BAD_PARAMS'],
    ['POST', '/v1/sessions', { cursor: { epoch: 0, position: 41 }, sources: [{ dataset: 'code' }] }, {}, 400, 'NDP_ERR_BAD_PARAMS'],
    ['POST', '/v1/sessions', { sources: [{ dataset: 'nope' }] }, {}, 404, 'NDP_ERR_UNKNOWN_DATASET'],
    ['POST', '/v1/sessions', { sources: [{ src: 'GRADIENT' }] }, {}, 404, 'NDP_ERR_UNKNOWN_DATASET'],
    ['POST', '/v1/sessions', 'x'.repeat(70_000), {}, 413, 'NDP_ERR_REQUEST_TOO_LARGE'],
    ['GET', '/v1/sessions/999', undefined, {}, 404, 'NDP_ERR_UNKNOWN_SESSION'],
    ['DELETE', '/v1/sessions/999', undefined, {}, 404, 'NDP_ERR_UNKNOWN_SESSION'],
    ['PUT', '/v1/datasets', undefined, {}, 405, 'NDP_ERR_METHOD_NOT_ALLOWED'],
    ['GET', '/nothing', undefined, {}, 404, 'NDP_ERR_NOT_FOUND'],
  ];
  for (const [method, path, body, headers, status, code] of cases) {
    const res = await http(base, method, path, body, headers);
    t.equal(res.status, status, `${method} ${path} ${typeof body === 'string' ? body.slice(0, 12) : JSON.stringify(body) ?? ''} → ${status}`);
    t.equal(res.json?.error?.code, code);
  }
  t.equal((await http(base, 'PUT', '/v1/datasets')).headers.get('allow'), 'GET');

  const health = await http(base, 'GET', '/healthz');
  t.match(health.json, { ok: true, sessions: 0 });
  t.ok(health.json.recvBufferBytes > 0, `UDP receive buffer read back (${health.json.recvBufferBytes})`);
  const metrics = await http(base, 'GET', '/metrics');
  for (const name of ['ndp_frames_sent_total', 'ndp_bytes_sent_total', 'ndp_retransmits_total', 'ndp_drops_total', 'ndp_sessions', 'ndp_credit_stalls_total', 'ndp_injected_total', 'ndp_sessions_opened_total']) t.match(metrics.json, new RegExp(`# TYPE ${name} `), name);
  t.match(metrics.json, /ndp_frames_sent_total\{transport="ws",kind="data"\} \d+/);
  t.equal(await server.stop(), 0);
});

t.test('limits at the limit: sessions, rate, window, datagram, retransmit buffer, handshake timeout', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 300);
  const server = await startServer(t, [file], ['--max-sessions', '2', '--max-session-rate', '1000000', '--max-window', '100', '--max-datagram', '2000', '--retransmit-bytes', '4096', '--handshake-timeout', '300']);
  const base = server.baseUrl;
  const first = await http(base, 'POST', '/v1/sessions', { rate: 5_000_000_000, window: 5000, datagram: 9000 });
  t.equal(first.status, 201);
  t.same([first.json.params.rate, first.json.params.window, first.json.params.datagram], [1_000_000, 100, 2000], 'rate, window and datagram clamped to the server maxima');
  t.equal((await http(base, 'POST', '/v1/sessions', { rate: 0 })).json.params.rate, 1_000_000, 'rate 0 means the maximum');
  const third = await http(base, 'POST', '/v1/sessions', {});
  t.equal(third.status, 503, 'the session over --max-sessions is refused');
  t.equal(third.json.error.code, 'NDP_ERR_TOO_MANY_SESSIONS');
  t.equal(third.headers.get('retry-after'), '1');
  const inBand = new RawUdpClient(server.ready.udp!);
  await inBand.bind();
  await inBand.open({});
  t.equal(inBand.collector.reject?.code, 'NDP_ERR_TOO_MANY_SESSIONS', 'in-band too');
  inBand.close();
  for (const s of (await http(base, 'GET', '/v1/sessions')).json.sessions) t.equal((await http(base, 'DELETE', `/v1/sessions/${s.session}`)).status, 200);

  // Never acknowledge: frames pile up in the 4 KiB retransmit buffer, the oldest are evicted; a
  // NACK for seq 0 is answered GONE evicted.
  const holder = new RawUdpClient(server.ready.udp!, { holdAck: true, window: 100 });
  await holder.bind();
  await holder.open({ window: 100 });
  await holder.collector.until(() => holder.collector.highest >= 99, 10_000, '100 frames');
  await settle(100);
  t.equal(holder.collector.highest, 99, 'no frame beyond the credit window');
  const stalled = (await http(base, 'GET', `/v1/sessions/${holder.collector.session}`)).json;
  t.ok(stalled.creditStalls >= 1, 'credit stall counted');
  t.ok(stalled.buffered.retransmit <= 4096, `retransmit buffer at most 4096 B (${stalled.buffered.retransmit})`);
  holder.collector.control({ t: CONTROL.NACK, session: holder.collector.session, ranges: [[0, 0]] } as ControlMessage);
  await holder.collector.until(() => holder.collector.gone.length > 0, 3000, 'GONE');
  t.same(holder.collector.gone[0], { ranges: [[0, 0]], reason: 'evicted' });
  holder.close();

  const silent = await RawWsClient.connect(server.ready.ws!);
  await silent.closed;
  t.equal(silent.closeCode, 4408, 'no SUBSCRIBE within --handshake-timeout: 4408');
  t.equal(silent.closeReason, 'NDP_ERR_HANDSHAKE_TIMEOUT');
  t.equal(await server.stop(), 0);
});

t.test('rate limits: a session and the whole server never send faster than their buckets allow', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 3000, SRC.TEXT_CORPUS, 0, 256);
  const total = 400_000;
  const server = await startServer(t, [file], ['--max-total-rate', String(total), '--max-session-rate', '1000000']);
  const sentBytes = async (c: RawWsClient) => (await http(server.baseUrl, 'GET', `/v1/sessions/${c.collector.session}`)).json.sent.bytes as number;
  // Upper bounds only (a slow machine sends less, never more): rate x time plus one burst.
  const alone = await RawWsClient.connect(server.ready.ws!);
  let started = performance.now();
  await alone.open({ rate: 150_000 });
  await settle(1000);
  let elapsed = (performance.now() - started) / 1000;
  const aloneBytes = await sentBytes(alone);
  t.ok(aloneBytes > 0 && aloneBytes <= 150_000 * elapsed + 2 * 1472, `a session at rate 150,000: ${aloneBytes} B in ${elapsed.toFixed(2)} s`);
  alone.close();

  const clients: RawWsClient[] = [];
  started = performance.now();
  for (let i = 0; i < 2; i++) {
    const c = await RawWsClient.connect(server.ready.ws!);
    await c.open({ rate: 0 });
    t.equal((c.collector.accept!.params as { rate: number }).rate, 1_000_000, 'rate 0 resolves to --max-session-rate');
    clients.push(c);
  }
  await settle(1000);
  elapsed = (performance.now() - started) / 1000;
  const sum = (await sentBytes(clients[0]!)) + (await sentBytes(clients[1]!));
  // Each session alone could send 1,000,000 B/s: only the server-wide bucket holds the sum down.
  t.ok(sum > 0 && sum <= total * elapsed + 131_072 + 2 * 1472, `two sessions: ${sum} B in ${elapsed.toFixed(2)} s <= --max-total-rate x time + burst`);
  for (const c of clients) c.close();
  t.equal(await server.stop(), 0);
});

t.test('ndp serve refuses bad options (exit 2) and unreadable files or busy ports (exit 1) with a clear message', async (t) => {
  const dir = await tempDir(t);
  const file = await makeDataset(dir, 'text', 3);
  const run = (args: string[]) =>
    new Promise<{ code: number | null; err: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      // A refusal must end the process: if it hangs, kill it so the assertion fails instead of the run stalling.
      const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
      p.on('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, err });
      });
    });
  t.match(await run([]), { code: 2, err: /NDP_ERR_SERVER_OPTION: name at least one \.ndp file/ });
  t.match(await run([file, '--udp', '70000']), { code: 2, err: /--udp must be an integer 0\.\.65535/ });
  t.match(await run([file, '--inject-drop', '2']), { code: 2, err: /--inject-drop must be a number in \[0, 1\]/ });
  t.match(await run([file, '--route', 'src=NOPE,action=drop']), { code: 2, err: /NDP_ERR_BAD_ROUTE/ });
  t.match(await run([file, '--tls-cert', file]), { code: 2, err: /--tls-cert and --tls-key go together/ });
  t.match(await run([`${dir}/missing.ndp`, '--udp', '0', '--ws', '0', '--http', '0']), { code: 1, err: /ENOENT|no such file/ });
  const server = await startServer(t, [file]);
  t.match(await run([file, '--udp', '0', '--ws', '0', '--http', String(server.ready.http)]), { code: 1, err: /EADDRINUSE/ }, 'a busy HTTP port is a startup error');
  t.match(await run([file, '--udp', String(server.ready.udp), '--ws', '0', '--http', '0']), { code: 1, err: /EADDRINUSE/ }, 'a busy UDP port too');
  t.equal(await server.stop(), 0);
});
