/**
 * A real loopback session (UDP over IPv4 and IPv6, WebSocket) captured by a pcap tap on each
 * endpoint; then the same file is read three ways and they must agree: what the test sent and the
 * receiving endpoint counted, `ndp inspect`, and tshark with the generated Lua dissector.
 */
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { captureFrames, type CaptureRecord, type FrameRecord } from '../../src/capture/capture-frames.js';
import { CaptureSummarizer, type CaptureSummary } from '../../src/capture/capture-summary.js';
import { runLoopbackSessions, type LoopbackRun } from './loopback-session.js';
import { REPO_ROOT, tshark, tsharkFields, tsharkMissing } from './tshark.js';
import { tempDir } from '../temp-dir.js';

const dir = tempDir(t, 'ndp-capture-');

let run: LoopbackRun;
t.before(async () => {
  run = await runLoopbackSessions(dir);
});

function inspect(file: string): { records: CaptureRecord[]; summary: CaptureSummary } {
  const records = [...captureFrames(file)];
  const summarizer = new CaptureSummarizer();
  for (const r of records) summarizer.add(r);
  return { records, summary: summarizer.finish() };
}

const frames = (records: CaptureRecord[]): FrameRecord[] => records.filter((r): r is FrameRecord => r.kind === 'frame');
const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

for (const side of ['server', 'client'] as const) {
  t.test(`ndp inspect on the ${side}'s capture matches what was sent`, async (t) => {
    const { records, summary } = inspect(side === 'server' ? run.serverPcap : run.clientPcap);
    t.equal(records.filter((r) => r.kind === 'malformed').length, 0, 'no malformed units');
    t.equal(summary.frames, sum(run.truth.map((s) => s.framesSent)), 'every frame either side sent');
    t.equal(summary.crcFailures, sum(run.truth.map((s) => s.corrupted)), 'CRC failures = frames corrupted on purpose');
    t.equal(summary.samplesReassembled, sum(run.truth.map((s) => s.samples)), 'every sample reassembled');
    t.equal(summary.samplesIncomplete, 0);
    t.same(summary.samplesDropped, {});
    for (const truth of run.truth) {
      const s = summary.sessions.find((x) => x.session === truth.session);
      if (s === undefined) {
        t.fail(`session ${truth.session} missing from the summary`);
        continue;
      }
      t.equal(s.firstSeq, 0, `session ${truth.session} first seq`);
      t.equal(s.lastSeq, truth.lastSeq, `session ${truth.session} last seq`);
      t.equal(s.missingSeqs, 0, `session ${truth.session}: the dropped and corrupted seqs were repaired`);
      t.equal(s.retransmissions, truth.retransmissions, `session ${truth.session} retransmissions`);
      t.equal(s.repeatedSeqs, truth.duplicates, `session ${truth.session} repeated seqs`);
      t.equal(s.samplesReassembled, truth.samples, `session ${truth.session} samples`);
      t.equal(frames(records).filter((r) => r.transport === truth.transport && r.segment?.session === truth.session).length > 0, true);
    }
    t.ok(summary.byTransport['ws']! > 0 && summary.byTransport['udp']! > 0, 'both transports present');
    t.ok(run.truth.length >= 2, `sessions run: ${run.truth.map((s) => s.session).join(', ')}`);
    t.equal(new Set(frames(records).map((r) => r.from.startsWith('[') ? 6 : 4)).size, run.truth.length === 3 ? 2 : 1, 'IPv6 frames present when ::1 is');
  });
}

t.test('ndp inspect on the client capture agrees with the client endpoint’s own counts', async (t) => {
  const { records, summary } = inspect(run.clientPcap);
  const servers = new Set(run.servers);
  const received = frames(records).filter((r) => servers.has(r.from));
  t.equal(received.length, run.receiver.frames, 'frames received');
  t.equal(received.filter((r) => !r.frame.crcOk).length, run.receiver.badCrc, 'bad CRC received');
  t.equal(received.filter((r) => r.frame.crcOk && r.segment !== undefined).length, run.receiver.segments, 'segments received with a good CRC');
  t.equal(summary.samplesReassembled, run.receiver.samplesDelivered, 'samples delivered');
  t.equal(sum(summary.sessions.map((s) => s.retransmissions)), run.receiver.retransmitted, 'retransmissions');
});

t.test('tshark with the ndpx dissector decodes the same frames as ndp inspect', { skip: tsharkMissing() }, async (t) => {
  for (const file of [run.serverPcap, run.clientPcap]) {
    const rows = tsharkFields(file, ['frame.number', 'ndpx.typ', 'ndpx.crc.status', 'ndpx.seg.session', 'ndpx.seg.seq', 'ndpx.seg.flags.retransmit', 'ndpx.ctl.type']);
    const byPacket = new Map<number, FrameRecord[]>();
    for (const r of frames(inspect(file).records)) byPacket.set(r.packet, [...(byPacket.get(r.packet) ?? []), r]);
    t.same(rows.map((r) => Number(r['frame.number']![0])), [...byPacket.keys()], `${file}: the same packets carry NDP`);
    for (const row of rows) {
      const packet = Number(row['frame.number']![0]);
      const mine = byPacket.get(packet) ?? [];
      const hex = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;
      t.same(row['ndpx.typ'], mine.map((r) => hex(r.frame.typ)), `packet ${packet} TYP`);
      t.same(row['ndpx.crc.status'], mine.map((r) => (r.frame.crcOk ? '1' : '2')), `packet ${packet} CRC verdicts`);
      t.same(row['ndpx.seg.seq'], mine.filter((r) => r.segment !== undefined).map((r) => String(r.segment!.seq)), `packet ${packet} seqs`);
      t.same(row['ndpx.seg.session'], mine.filter((r) => r.segment !== undefined).map((r) => String(r.segment!.session)), `packet ${packet} sessions`);
      t.same(row['ndpx.ctl.type'], mine.filter((r) => r.control !== undefined).map((r) => String(r.control!['t'])), `packet ${packet} control types`);
    }
    const total = sum(rows.map((r) => r['ndpx.typ']!.length));
    t.equal(total, sum(run.truth.map((s) => s.framesSent)), `${file}: tshark counts every frame`);
    const bad = sum(rows.map((r) => r['ndpx.crc.status']!.filter((v) => v === '2').length));
    t.equal(bad, sum(run.truth.map((s) => s.corrupted)), `${file}: tshark's bad CRC verdicts`);
    const expert = tshark(file, ['-Y', 'ndpx.crc.bad', '-T', 'fields', '-e', 'frame.number']).trim().split('\n').filter(Boolean);
    t.ok(expert.length > 0 && expert.length <= bad, 'bad CRC raised as expert info');
    const retransmitted = sum(rows.map((r) => r['ndpx.seg.flags.retransmit']!.filter((v) => v === '1' || v === 'True').length));
    t.equal(retransmitted, sum(run.truth.map((s) => s.retransmissions)), 'RETRANSMIT flags');
  }
});

t.test('tshark: the encapsulation is clean (checksums, TCP stream, WebSocket masking, no Lua errors)', { skip: tsharkMissing() }, async (t) => {
  for (const file of [run.serverPcap, run.clientPcap]) {
    const checks = ['-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE'];
    const badChecksums = tshark(file, [...checks, '-Y', 'ip.checksum.status == 0 || udp.checksum.status == 0 || tcp.checksum.status == 0']).trim();
    t.equal(badChecksums, '', 'every IP/UDP/TCP checksum verifies');
    const good = tshark(file, [...checks, '-Y', 'udp.checksum.status == 1 || tcp.checksum.status == 1', '-T', 'fields', '-e', 'frame.number']).trim().split('\n').filter(Boolean);
    t.ok(good.length > 10, 'checksums were checked');
    t.equal(tshark(file, ['-Y', 'tcp.analysis.flags && !tcp.analysis.window_update']).trim(), '', 'no TCP analysis warnings (lost segments, retransmissions, bad ACKs)');
    const masked = tshark(file, ['-Y', 'websocket', '-T', 'fields', '-e', 'websocket.mask', '-e', 'tcp.dstport']).trim().split('\n');
    t.equal(masked.length, 7, 'seven WebSocket messages (3 from the client, 4 from the server)');
    for (const line of masked) {
      const [mask, dstPort] = line.split('\t');
      t.equal(mask === '1' || mask === 'True', Number(dstPort) === run.wsServer.port, `masked exactly when client → server (${line})`);
    }
    t.notMatch(tshark(file, ['-V']), /Lua Error|Malformed Packet/, 'no dissector errors');
  }
});

t.test('the ndp inspect command: text, --json, --session, --bad-crc', async (t) => {
  const inspectCli = (args: string[]): string =>
    execFileSync(process.execPath, ['--input-type=module', '-e', `import { run } from '${REPO_ROOT}dist/src/capture/inspect-pcap.js'; process.exitCode = await run(${JSON.stringify(args)});`], { encoding: 'utf8' });
  const json = JSON.parse(inspectCli([run.serverPcap, '--json'])) as { frames: unknown[]; summary: CaptureSummary; format: string };
  t.equal(json.format, 'pcap');
  t.equal(json.frames.length, sum(run.truth.map((s) => s.framesSent)));
  const bad = JSON.parse(inspectCli([run.serverPcap, '--json', '--bad-crc'])) as { frames: Array<{ crcOk: boolean }> };
  t.equal(bad.frames.length, sum(run.truth.map((s) => s.corrupted)));
  t.ok(bad.frames.every((f) => f.crcOk === false));
  const ws = JSON.parse(inspectCli([run.serverPcap, '--json', '--session', '88'])) as { frames: Array<{ transport: string }>; summary: CaptureSummary };
  t.ok(ws.frames.length > 0 && ws.frames.every((f) => f.transport === 'ws'), 'session 88 is the WebSocket one');
  t.same(ws.summary.sessions.map((s) => s.session), [88]);
  const text = inspectCli([run.clientPcap]);
  t.match(text, /crc=BAD\(0x[0-9a-f]{4}\)/);
  t.match(text, /session=77 seq=3 .*\[RETRANSMIT,LAST\]/);
  t.match(text, /NACK \{"session":77,"ranges":\[\[3,3\],\[7,7\]\]\}/);
  t.match(text, /summary: \d+ NDP frames/);
});
