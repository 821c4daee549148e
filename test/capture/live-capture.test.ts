/**
 * A live capture, the way a user runs `tcpdump -i lo`: dumpcap records a real `ndp serve` session on
 * the loopback interface (real WebSocket handshake, real TCP segmentation, pcapng with Linux
 * link-layer headers) while the client also writes its tap capture. `ndp inspect` must find the same
 * frames in both, and tshark with the dissector the same as `ndp inspect` in the live file.
 * Skipped where capturing is not permitted (needs root or CAP_NET_RAW) or dumpcap is absent.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import t from 'tap';
import { connect } from '../../client/client.js';
import { captureFrames, type FrameRecord } from '../../src/capture/capture-frames.js';
import { PcapWriter } from '../../src/capture/pcap-writer.js';
import { SRC } from '../../src/protocol/registry.js';
import { startServer, tempDir, writeDataset } from '../client/fixtures.js';
import { tsharkFields, tsharkMissing } from './tshark.js';

function dumpcapMissing(): string | undefined {
  const probe = spawnSync('dumpcap', ['-D'], { encoding: 'utf8' });
  if (probe.error !== undefined) return 'dumpcap is not installed (it comes with tshark)';
  if (probe.status !== 0 || !/\blo\b/.test(probe.stdout)) return `dumpcap cannot list the loopback interface here (needs root or CAP_NET_RAW): ${probe.stderr.trim()}`;
  return undefined;
}

/** What identifies a frame, independent of how it was captured. */
function key(r: FrameRecord): string {
  return [r.transport, r.frame.src, r.frame.typ, r.frame.crcOk, r.frame.crc, r.segment?.session ?? '', r.segment?.seq ?? '', r.segment?.flags ?? '', r.control?.['t'] ?? ''].join('|');
}

const frameKeys = (file: string): string[] =>
  [...captureFrames(file)]
    .filter((r): r is FrameRecord => r.kind === 'frame')
    .map(key)
    .sort();

t.test('a live loopback capture holds the same frames as the endpoint’s tap', { skip: dumpcapMissing() }, async (t) => {
  const dir = tempDir(t);
  const data = join(dir, 'data.ndp');
  await writeDataset(data, 'data', 40);
  const server = await startServer(t, [data], ['--inject-corrupt', '0.05', '--inject-drop', '0.05', '--inject-seed', '9']);
  const live = join(dir, 'live.pcapng');
  const dumpcap = spawn('dumpcap', ['-i', 'lo', '-q', '-w', live, '-f', `udp port ${server.udp} or tcp port ${server.ws}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = once(dumpcap, 'exit');
  t.teardown(() => {
    if (dumpcap.exitCode === null) dumpcap.kill('SIGKILL');
  });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dumpcap did not start: ${err}`)), 15_000);
    dumpcap.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('Capturing on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    dumpcap.once('exit', () => reject(new Error(`dumpcap exited: ${err}`)));
  });
  // "Capturing on" comes a moment before the socket filter is attached: a datagram sent at once can be missed.
  await new Promise((r) => setTimeout(r, 1000));
  const tapFiles: string[] = [];
  for (const kind of ['udp', 'ws'] as const) {
    const file = join(dir, `tap-${kind}.pcap`);
    tapFiles.push(file);
    const tap = new PcapWriter(file);
    const client = await connect(`${kind}://127.0.0.1:${kind === 'udp' ? server.udp : server.ws}`, { tap });
    for await (const _ of client.samples());
    await client.close();
    tap.close();
  }
  // Let the last packets reach dumpcap's ring before it stops.
  await new Promise((r) => setTimeout(r, 500));
  dumpcap.kill('SIGTERM');
  await exited;
  const liveKeys = frameKeys(live);
  const tapKeys = tapFiles.flatMap(frameKeys).sort();
  t.ok(liveKeys.length > 100, `${liveKeys.length} frames captured live`);
  // The wire may carry more than the endpoint received: server datagrams the client's socket dropped
  // (receive-buffer overflow on a loaded machine, the kernel's RcvbufErrors; repaired by NACKs), and a
  // reply (BYE) that reached the client's port after it closed. The tap records what the endpoint got.
  const remaining = new Map<string, number>();
  for (const k of liveKeys) remaining.set(k, (remaining.get(k) ?? 0) + 1);
  const notOnWire = tapKeys.filter((k) => {
    const n = remaining.get(k) ?? 0;
    remaining.set(k, n - 1);
    return n <= 0;
  });
  t.same(notOnWire, [], 'every frame the tap recorded is on the wire, with the same CRC verdict, session, seq and control type');
  const extra = [...remaining.entries()].flatMap(([k, n]) => new Array<string>(Math.max(0, n)).fill(k));
  t.ok(extra.every((k) => k.split('|')[1] !== String(SRC.TRAINER) && (k.startsWith('udp|') || k.startsWith('ws|254|32|'))), `extra on the wire: only server UDP datagrams and late server control frames: ${JSON.stringify(extra)}`);
  t.ok(extra.filter((k) => k.startsWith('ws|')).length <= 1, 'WebSocket (TCP) delivers everything but a late BYE');
  t.ok(liveKeys.some((k) => k.includes('|false|')), 'corrupted frames among them');
  if (tsharkMissing() === undefined) {
    const rows = tsharkFields(live, ['ndpx.crc.status', 'ndpx.seg.seq']);
    t.equal(rows.reduce((n, r) => n + r['ndpx.crc.status']!.length, 0), liveKeys.length, 'tshark finds every frame in the live capture (real WebSocket handshake)');
    t.equal(rows.reduce((n, r) => n + r['ndpx.crc.status']!.filter((v) => v === '2').length, 0), liveKeys.filter((k) => k.includes('|false|')).length, 'tshark: same bad CRC verdicts');
  }
});
