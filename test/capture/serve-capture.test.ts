/**
 * A real session: `ndp serve --pcap` (a child process) with injected drops and corruption, and the
 * client library with a pcap tap, over UDP and WebSocket on loopback. `ndp inspect` counts on each
 * capture must equal the endpoint's own stats (the client's accounting, the server's /metrics), and
 * tshark with the dissector must agree with `ndp inspect` on the server's file.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { connect } from '../../client/client.js';
import { HttpApi } from '../../client/http-api.js';
import { captureFrames, type CaptureRecord, type FrameRecord } from '../../src/capture/capture-frames.js';
import { CaptureSummarizer, type CaptureSummary } from '../../src/capture/capture-summary.js';
import { PcapWriter } from '../../src/capture/pcap-writer.js';
import { SRC } from '../../src/protocol/registry.js';
import { CLI, startServer, tempDir, writeDataset } from '../client/fixtures.js';
import { tsharkFields, tsharkMissing } from './tshark.js';

const COUNT = 100;

function inspect(file: string): { records: CaptureRecord[]; summary: CaptureSummary } {
  const records = [...captureFrames(file)];
  const summarizer = new CaptureSummarizer();
  for (const r of records) summarizer.add(r);
  return { records, summary: summarizer.finish() };
}

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

t.test('ndp serve --pcap and a tapped client: captures agree with both endpoints’ own counts', async (t) => {
  const dir = tempDir(t);
  const data = join(dir, 'data.ndp');
  await writeDataset(data, 'data', COUNT);
  const serverPcap = join(dir, 'server.pcap');
  const server = await startServer(t, [data], ['--inject-drop', '0.05', '--inject-corrupt', '0.05', '--inject-seed', '3', '--pcap', serverPcap]);
  for (const kind of ['udp', 'ws'] as const) {
    await t.test(`client over ${kind}`, async (t) => {
      const clientPcap = join(dir, `client-${kind}.pcap`);
      const tap = new PcapWriter(clientPcap);
      const client = await connect(`${kind}://127.0.0.1:${kind === 'udp' ? server.udp : server.ws}`, { tap });
      let delivered = 0;
      for await (const _ of client.samples()) delivered++;
      const s = client.stats;
      await client.close();
      tap.close();
      t.equal(delivered, COUNT);
      t.ok(s.frames.dropped.crc > 0 && s.frames.repaired > 0, `faults happened (${s.frames.dropped.crc} bad CRC, ${s.frames.repaired} repaired)`);
      const { records, summary } = inspect(clientPcap);
      const fromServer = records.filter((r): r is FrameRecord => r.kind === 'frame' && r.frame.src !== SRC.TRAINER);
      t.equal(summary.crcFailures, s.frames.dropped.crc, 'CRC failures = the client’s crc drops');
      t.equal(summary.samplesReassembled, s.samples.delivered, 'samples reassembled = delivered');
      t.equal(summary.sessions.length, 1);
      const session = summary.sessions[0]!;
      t.equal(session.distinctSeqs, s.frames.used, 'distinct good seqs = frames used');
      t.equal(session.missingSeqs, 0, 'no gap left in the capture');
      t.equal(session.repeatedSeqs, s.frames.dropped.duplicate, 'repeated seqs = the client’s duplicate drops');
      // Loopback never duplicates a datagram: every duplicate is a retransmission that came after the gap was filled.
      t.equal(session.retransmissions, s.frames.repaired + s.frames.dropped.duplicate, 'retransmissions = gaps repaired + duplicate retransmissions');
      t.equal(fromServer.filter((r) => r.segment !== undefined || !r.frame.crcOk).length, s.frames.used + s.frames.dropped.crc + s.frames.dropped.duplicate, 'data frames received');
      t.equal(records.filter((r) => r.kind === 'malformed').length, 0);
    });
  }
  const metrics = await new HttpApi(`http://127.0.0.1:${server.http}`).metrics();
  await server.kill('SIGTERM'); // graceful: the server closes (flushes) its capture
  const { records, summary } = inspect(serverPcap);
  const frames = records.filter((r): r is FrameRecord => r.kind === 'frame');
  for (const transport of ['udp', 'ws'] as const) {
    const sent = frames.filter((r) => r.transport === transport && r.frame.src !== SRC.TRAINER).length;
    const expected = ['control', 'data', 'retransmit'].reduce((n, kind) => n + metric(metrics, 'ndp_frames_sent_total', `{transport="${transport}",kind="${kind}"}`), 0);
    t.equal(sent, expected, `${transport}: frames in the capture = ndp_frames_sent_total`);
    const received = frames.filter((r) => r.transport === transport && r.frame.src === SRC.TRAINER).length;
    t.equal(received, metric(metrics, 'ndp_datagrams_received_total', `{transport="${transport}"}`), `${transport}: client frames in the capture = ndp_datagrams_received_total (one frame per datagram/message)`);
  }
  t.equal(summary.crcFailures, metric(metrics, 'ndp_injected_total', '{kind="corrupt"}'), 'CRC failures = corruptions injected');
  t.equal(summary.sessions.reduce((n, s) => n + s.retransmissions, 0), metric(metrics, 'ndp_retransmits_total'), 'retransmissions = ndp_retransmits_total');
  t.equal(summary.samplesReassembled, 2 * COUNT);

  if (tsharkMissing() === undefined) {
    const rows = tsharkFields(serverPcap, ['frame.number', 'ndpx.crc.status', 'ndpx.seg.flags.retransmit']);
    t.equal(rows.reduce((n, r) => n + r['ndpx.crc.status']!.length, 0), summary.frames, 'tshark: same number of frames');
    t.equal(rows.reduce((n, r) => n + r['ndpx.crc.status']!.filter((v) => v === '2').length, 0), summary.crcFailures, 'tshark: same bad CRC verdicts');
    t.equal(rows.reduce((n, r) => n + r['ndpx.seg.flags.retransmit']!.filter((v) => v === '1' || v === 'True').length, 0), metric(metrics, 'ndp_retransmits_total'), 'tshark: same retransmissions');
    t.same(rows.map((r) => Number(r['frame.number']![0])), [...new Set(frames.map((r) => r.packet))], 'tshark: the same packets');
  } else {
    t.comment(`tshark checks skipped: ${tsharkMissing()}`);
  }
});

t.test('ndp pull --pcap (a child process): its capture agrees with its own --stats', async (t) => {
  const dir = tempDir(t);
  const data = join(dir, 'data.ndp');
  await writeDataset(data, 'data', 60);
  const server = await startServer(t, [data], ['--inject-corrupt', '0.05', '--inject-seed', '5']);
  for (const kind of ['udp', 'ws'] as const) {
    const pcap = join(dir, `pull-${kind}.pcap`);
    const statsFile = join(dir, `pull-${kind}.json`);
    const url = `${kind}://127.0.0.1:${kind === 'udp' ? server.udp : server.ws}`;
    const pull = spawnSync(process.execPath, [CLI, 'pull', '--server', url, '--pcap', pcap, '--pcap-snaplen', '64k', '--stats', statsFile, '--out', join(dir, 'samples.jsonl'), '--quiet'], { encoding: 'utf8' });
    t.equal(pull.status, 0, `ndp pull over ${kind} exits 0 ${pull.stderr}`);
    const stats = JSON.parse(readFileSync(statsFile, 'utf8')) as { frames: { used: number; repaired: number; dropped: { crc: number; duplicate: number } }; samples: { delivered: number } };
    const { summary } = inspect(pcap);
    t.equal(summary.crcFailures, stats.frames.dropped.crc, `${kind}: CRC failures = --stats frames.dropped.crc`);
    t.ok(stats.frames.dropped.crc > 0, 'corruption happened');
    t.equal(summary.samplesReassembled, stats.samples.delivered, `${kind}: samples`);
    t.equal(summary.sessions[0]?.distinctSeqs, stats.frames.used, `${kind}: frames used`);
    t.equal(summary.sessions[0]?.retransmissions, stats.frames.repaired + stats.frames.dropped.duplicate, `${kind}: retransmissions = repaired + duplicate retransmissions`);
    t.equal(summary.sessions[0]?.repeatedSeqs, stats.frames.dropped.duplicate, `${kind}: repeated seqs = duplicates`);
  }
  const small = join(dir, 'small.pcap');
  const limited = spawnSync(process.execPath, [CLI, 'pull', '--server', `udp://127.0.0.1:${server.udp}`, '--pcap', small, '--pcap-max-bytes', '2k', '--out', join(dir, 'small.jsonl'), '--quiet'], { encoding: 'utf8' });
  t.equal(limited.status, 0, 'a full capture does not stop the endpoint');
  t.match(limited.stderr, /reached its size limit/, 'the user is told once');
  t.ok(statSync(small).size <= 2048, `the capture stays within --pcap-max-bytes (${statSync(small).size} bytes)`);
  const bad = spawnSync(process.execPath, [CLI, 'pull', '--server', `udp://127.0.0.1:${server.udp}`, '--pcap-snaplen', '100'], { encoding: 'utf8' });
  t.equal(bad.status, 2, '--pcap-snaplen without --pcap is refused');
  t.match(bad.stderr, /need --pcap FILE/);
  const bad2 = spawnSync(process.execPath, [CLI, 'pull', '--server', `udp://127.0.0.1:${server.udp}`, '--pcap', join(dir, 'x.pcap'), '--pcap-max-bytes', 'lots'], { encoding: 'utf8' });
  t.equal(bad2.status, 2);
  t.match(bad2.stderr, /--pcap-max-bytes must be a whole number/);
});
