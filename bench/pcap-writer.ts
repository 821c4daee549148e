/**
 * What a pcap tap costs per datagram and per WebSocket message (src/capture/pcap-writer.ts), side by
 * side with a baseline in the same run: the baseline writes the same bytes as bare pcap records (a
 * 16-byte record header + the payload, same 1 MiB buffering, no IP/UDP/TCP synthesis, no checksum).
 * Files go to a temp dir and rotate so the disk use stays bounded.
 * Run: `npm run build && node dist/bench/pcap-writer.js`.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { PcapWriter } from '../src/capture/pcap-writer.js';
import { encodeFrame } from '../src/protocol/frame.js';
import { DST, SRC, TYP } from '../src/protocol/registry.js';
import { measure, report, type Row } from './report.js';

const dir = mkdtempSync(`${tmpdir()}/ndp-bench-pcap-`);

/** The baseline: bare pcap records of the payload, buffered like the writer. */
class BareRecords {
  private readonly fd: number;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  constructor(path: string) {
    this.fd = openSync(path, 'w');
  }
  write(payload: Uint8Array): void {
    const header = Buffer.allocUnsafe(16);
    const micros = Math.round((performance.timeOrigin + performance.now()) * 1000);
    header.writeUInt32LE(Math.floor(micros / 1e6), 0);
    header.writeUInt32LE(micros % 1e6, 4);
    header.writeUInt32LE(payload.length, 8);
    header.writeUInt32LE(payload.length, 12);
    this.pending.push(header, payload);
    this.pendingBytes += 16 + payload.length;
    if (this.pendingBytes >= 1 << 20) this.flush();
  }
  flush(): void {
    writeSync(this.fd, Buffer.concat(this.pending, this.pendingBytes));
    this.pending = [];
    this.pendingBytes = 0;
  }
  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

const a = { address: '127.0.0.1', port: 40000 };
const b = { address: '127.0.0.1', port: 7400 };
const client = { address: '127.0.0.1', port: 50000 };
const server = { address: '127.0.0.1', port: 7401 };
const rotate = { maxBytes: 256 << 20, onLimit: 'rotate' as const, maxFiles: 1 };
const options = { rounds: 5, minMs: 200, warmupMs: 200 };
const rows: Row[] = [];

const cases: Array<[string, Uint8Array, number]> = [
  ['UDP datagram 1472 B', encodeFrame({ src: SRC.CODE_REPO, dst: DST.EMBEDDING, typ: TYP.SEGMENT, payload: new Uint8Array(1464).fill(7) }), 512],
  ['WebSocket message 256 KiB', new Uint8Array(256 << 10).fill(9), 4],
];
for (const [label, payload, batch] of cases) {
  const bare = new BareRecords(`${dir}/bare.pcap`);
  const writer = new PcapWriter(`${dir}/tap.pcap`, rotate);
  writer.wsOpen(client, server);
  const isUdp = label.startsWith('UDP');
  const impls: Array<[string, () => number]> = [
    ['bare pcap records (baseline)', () => { for (let i = 0; i < batch; i++) bare.write(payload); return batch; }],
    isUdp
      ? ['PcapWriter.udp (IPv4+UDP, checksums)', () => { for (let i = 0; i < batch; i++) writer.udp(a, b, payload); return batch; }]
      : ['PcapWriter.wsMessage server→client (TCP segments, checksums)', () => { for (let i = 0; i < batch; i++) writer.wsMessage(server, client, payload); return batch; }],
  ];
  if (!isUdp) impls.push(['PcapWriter.wsMessage client→server (+ masking)', () => { for (let i = 0; i < batch; i++) writer.wsMessage(client, server, payload); return batch; }]);
  let baseline = 0;
  for (const [impl, fn] of impls) {
    const m = measure(fn, options);
    if (baseline === 0) baseline = m.median;
    rows.push({
      unit: label,
      implementation: impl,
      'units/s': m.median,
      'payload MB/s': (m.median * payload.length) / 1e6,
      'µs per unit': 1e6 / m.median,
      'range units/s': `${Math.round(m.min).toLocaleString('en-US')}–${Math.round(m.max).toLocaleString('en-US')}`,
      'vs baseline': `${(m.median / baseline).toFixed(2)}×`,
    });
  }
  bare.close();
  writer.close();
}
rmSync(dir, { recursive: true, force: true });
report('pcap-writer', rows, { note: 'per-unit cost of a capture tap; the baseline writes the same payload bytes as bare pcap records' });
