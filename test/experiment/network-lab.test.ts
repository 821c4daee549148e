/**
 * The namespace lab for real: datagrams shaped like NDP frames cross a veth pair between two network
 * namespaces while nftables drops or corrupts them; the receiver's counts are checked against the
 * configured rate (wide statistical bounds) and against nft's own counters (exactly).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { isNdpError } from '../../src/protocol/errors.js';
import { TYP } from '../../src/protocol/registry.js';
import {
  CORRUPT_OFFSET,
  CORRUPT_VALUE,
  NetworkLab,
  labRuleset,
  listLabNamespaces,
  rateThreshold,
} from '../../src/experiment/network-lab.js';

const DATA_PORT = 7400;
const RECEIVER_PORT = 9000;
const DATAGRAMS = 2000;

/** Counts datagrams until a CONTROL-typed end marker arrives (control frames are never hit by the lab). */
const RECEIVER = `
import dgram from 'node:dgram';
const [host, port, corruptOffset, corruptValue, controlTyp] = process.argv.slice(1).map((v, i) => i === 0 ? v : Number(v));
const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
let data = 0, corrupted = 0, control = 0;
socket.on('message', (m) => {
  if (m[3] === controlTyp) {
    if (m[4] === 1) { process.stdout.write(JSON.stringify({ data, corrupted, control }) + '\\n'); socket.close(); }
    else control++;
    return;
  }
  data++;
  if (m[corruptOffset] === corruptValue) corrupted++;
});
socket.bind(port, host, () => process.stdout.write('ready\\n'));
`;

/** Sends N frames of the given TYP from the data port, paced so the receive buffer never overflows, then end markers. */
const SENDER = `
import dgram from 'node:dgram';
const [from, fromPort, to, toPort, count, typ, controlTyp] = process.argv.slice(1).map((v, i) => i === 0 || i === 2 ? v : Number(v));
const socket = dgram.createSocket('udp4');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
socket.bind(fromPort, from, async () => {
  const frame = Buffer.alloc(120);
  frame[0] = 0xaa; frame[3] = typ; frame[6] = 1;
  for (let i = 0; i < count; i++) {
    socket.send(frame, toPort, to);
    if (i % 25 === 24) await sleep(2);
  }
  await sleep(100);
  const end = Buffer.alloc(16); end[0] = 0xaa; end[3] = controlTyp; end[4] = 1;
  for (let i = 0; i < 3; i++) { socket.send(end, toPort, to); await sleep(50); }
  socket.close();
});
`;

async function runNode(argv: string[], script: string, args: (string | number)[], onReady?: () => void): Promise<string> {
  const [file, ...rest] = [...argv, process.execPath, '--input-type=module', '-e', script, '--', ...args.map(String)];
  const child = spawn(file!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (onReady !== undefined && out.includes('ready\n')) {
      const ready = onReady;
      onReady = undefined;
      ready();
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`child exited ${code}: ${err}`);
  return out;
}

async function exchange(lab: NetworkLab, typ: number, count: number): Promise<{ data: number; corrupted: number }> {
  let sender: Promise<string> | undefined;
  const receiver = runNode(
    lab.command('client', []),
    RECEIVER,
    [lab.clientAddress, RECEIVER_PORT, CORRUPT_OFFSET, CORRUPT_VALUE, TYP.CONTROL],
    () => {
      sender = runNode(lab.command('server', []), SENDER, [lab.serverAddress, DATA_PORT, lab.clientAddress, RECEIVER_PORT, count, typ, TYP.CONTROL]);
    },
  );
  const out = await receiver;
  await sender;
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error(`receiver printed no counts: ${out}`);
  return JSON.parse(line) as { data: number; corrupted: number };
}

/**
 * Why the lab tests cannot run here, or false when they can (probed by building one lab). Not
 * permitted (not root, a container without CAP_NET_ADMIN, no nftables) skips with the system's
 * message; any other error fails.
 */
async function unavailable(): Promise<string | false> {
  try {
    await (await NetworkLab.create({})).close();
    return false;
  } catch (err) {
    if (isNdpError(err, 'NDP_ERR_NETNS_UNAVAILABLE')) return `network namespaces not permitted here: ${(err as Error).message}`;
    throw err;
  }
}
const skip = await unavailable();

t.test('rates become integer thresholds out of 10,000', async (t) => {
  t.equal(rateThreshold(0.05), 500);
  t.equal(rateThreshold(0.123456), 1235);
  t.equal(rateThreshold(0), 0);
  t.equal(rateThreshold(1), 10_000);
  t.match(labRuleset(1, 0, 7400), /@th,88,8 16 counter drop/, 'rate 1 drops without a random draw');
  const rules = labRuleset(0.2, 0, 7400);
  t.match(rules, /udp sport 7400 @th,88,8 16 numgen random mod 10000 < 2000 counter drop/);
  t.notMatch(rules, /set 255/, 'no corruption rule at rate 0');
  t.match(labRuleset(0, 0.1, 7401), /udp sport 7401 .* < 1000 counter @th,112,8 set 255/);
});

t.test('bad rates are refused with a stable code', async (t) => {
  await t.rejects(NetworkLab.create({ dropRate: 1.5 }), { code: 'NDP_ERR_EXPERIMENT_BAD_OPTION' });
  await t.rejects(NetworkLab.create({ corruptRate: -0.1 }), { code: 'NDP_ERR_EXPERIMENT_BAD_OPTION' });
  await t.rejects(NetworkLab.create({ dropRate: Number.NaN }), { code: 'NDP_ERR_EXPERIMENT_BAD_OPTION' });
});

t.test('20% drop: about 80% of data frames arrive, and nft counts every drop exactly', { skip }, async (t) => {
  const lab = await NetworkLab.create({ dropRate: 0.2, dataPort: DATA_PORT });
  try {
    const got = await exchange(lab, TYP.SEGMENT, DATAGRAMS);
    const counters = await lab.counters();
    t.equal(counters.seen, DATAGRAMS, 'every data frame passed the hook');
    t.equal(got.data + counters.dropped, DATAGRAMS, 'received + dropped = sent');
    t.equal(counters.corrupted, 0);
    // Binomial(2000, 0.8): sd of the fraction is 0.009; ±0.1 is a bound that only a broken rule misses.
    t.ok(got.data / DATAGRAMS > 0.7 && got.data / DATAGRAMS < 0.9, `received fraction ${got.data / DATAGRAMS}`);
  } finally {
    await lab.close();
  }
  const left = await listLabNamespaces();
  t.notOk(left.includes(lab.serverNamespace) || left.includes(lab.clientNamespace), 'namespaces removed');
});

t.test('20% corruption: every frame arrives, the corrupted ones carry the mark nft counted', { skip }, async (t) => {
  const lab = await NetworkLab.create({ corruptRate: 0.2, dataPort: DATA_PORT });
  try {
    const got = await exchange(lab, TYP.SEGMENT, DATAGRAMS);
    const counters = await lab.counters();
    t.equal(got.data, DATAGRAMS, 'nothing lost');
    t.equal(got.corrupted, counters.corrupted, 'receiver saw exactly what nft corrupted');
    t.ok(got.corrupted / DATAGRAMS > 0.1 && got.corrupted / DATAGRAMS < 0.3, `corrupted fraction ${got.corrupted / DATAGRAMS}`);
  } finally {
    await lab.close();
  }
});

t.test('frames that are not SEGMENT data (control) are never hit, even at 100% drop', { skip }, async (t) => {
  const lab = await NetworkLab.create({ dropRate: 1, dataPort: DATA_PORT });
  try {
    const got = await exchange(lab, TYP.TOKEN_IDS, 200);
    t.equal(got.data, 200);
    t.equal((await lab.counters()).seen, 0);
  } finally {
    await lab.close();
  }
});

t.test('two labs at once do not collide, and both clean up', { skip }, async (t) => {
  const first = await NetworkLab.create({});
  const second = await NetworkLab.create({}).catch(async (err: unknown) => {
    await first.close();
    throw err;
  });
  t.not(first.serverNamespace, second.serverNamespace);
  await Promise.all([first.close(), second.close()]);
  const left = await listLabNamespaces();
  t.same(left.filter((n) => [first, second].some((l) => n === l.serverNamespace || n === l.clientNamespace)), []);
});

t.test('a process interrupted with SIGINT removes its lab', { skip }, async (t) => {
  const module = new URL('../../src/experiment/network-lab.js', import.meta.url).href;
  const script = `
    const { NetworkLab } = await import(${JSON.stringify(module)});
    const lab = await NetworkLab.create({ dropRate: 0.1 });
    process.stdout.write(JSON.stringify([lab.serverNamespace, lab.clientNamespace]) + '\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout.setEncoding('utf8'), 'data')) as [string];
  const names = JSON.parse(line) as string[];
  t.ok((await listLabNamespaces()).includes(names[0]!), 'lab exists while the process runs');
  child.kill('SIGINT');
  const [, signal] = (await once(child, 'exit')) as [number | null, string | null];
  t.equal(signal, 'SIGINT', 'the process still dies of SIGINT');
  const left = await listLabNamespaces();
  t.same(left.filter((n) => names.includes(n)), [], 'namespaces removed');
});
