/** The pcap writer: exact header bytes, checksums, addresses, and every limit at its edge. */
import { readFileSync, existsSync, statSync } from 'node:fs';
import t from 'tap';
import { captureFrames } from '../../src/capture/capture-frames.js';
import { readCapture } from '../../src/capture/capture-reader.js';
import { checksumAdd, checksumFinish } from '../../src/capture/internet-checksum.js';
import { formatIpAddress, parseIpAddress } from '../../src/capture/ip-address.js';
import { MAX_IP_PAYLOAD, udpPacket } from '../../src/capture/ip-packet.js';
import { decodePacket, LINKTYPE } from '../../src/capture/packet-decode.js';
import { LINKTYPE_RAW, MAX_SNAPLEN, PCAP_GLOBAL_HEADER_BYTES, PCAP_RECORD_HEADER_BYTES, PcapWriter, rotatedPath } from '../../src/capture/pcap-writer.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { DST, SRC, TYP } from '../../src/protocol/registry.js';
import { tempDir } from '../temp-dir.js';

const dir = tempDir(t, 'ndp-pcap-writer-');
let n = 0;
const path = (): string => `${dir}/w${n++}.pcap`;

const A = { address: '127.0.0.1', port: 40000 };
const B = { address: '127.0.0.1', port: 7400 };
const frame = (bytes: number): Uint8Array => encodeFrame({ src: SRC.TEXT_CORPUS, dst: DST.EMBEDDING, typ: TYP.TOKEN_IDS, payload: new Uint8Array(bytes) });

t.test('global header: LINKTYPE_RAW, microseconds, little-endian, snaplen', async (t) => {
  const file = path();
  const w = new PcapWriter(file, { snaplen: 1000 });
  w.close();
  const bytes = readFileSync(file);
  t.equal(bytes.length, PCAP_GLOBAL_HEADER_BYTES);
  t.equal(bytes.toString('hex'), 'd4c3b2a1' + '0200' + '0400' + '00000000' + '00000000' + 'e8030000' + '65000000');
  t.equal(bytes.readUInt32LE(20), LINKTYPE_RAW);
});

t.test('a UDP datagram becomes IPv4+UDP with valid checksums and the real ports', async (t) => {
  const payload = frame(13); // odd length: the checksum pads a byte
  const packet = udpPacket(parseIpAddress('10.1.2.3'), 5555, parseIpAddress('192.168.0.9'), 7400, payload);
  t.equal(packet.length, 20 + 8 + payload.length);
  t.equal(checksumFinish(checksumAdd(0, packet, 0, 20)), 0, 'IPv4 header checksum verifies');
  const pseudo = checksumAdd(checksumAdd(0, packet, 12, 20), Uint8Array.of(0, 17, 0, 8 + payload.length));
  t.equal(checksumFinish(checksumAdd(pseudo, packet, 20, packet.length)), 0, 'UDP checksum verifies over the pseudo-header');
  const decoded = decodePacket(LINKTYPE.RAW, packet, packet.length);
  t.match(decoded, { kind: 'udp', src: '10.1.2.3', dst: '192.168.0.9', srcPort: 5555, dstPort: 7400 });
  t.same(decoded.kind === 'udp' ? [...decoded.payload] : [], [...payload]);
});

t.test('addresses: IPv4, IPv6, IPv4-mapped, zone ids, mixed families', async (t) => {
  t.same(parseIpAddress('::ffff:127.0.0.1'), { version: 4, bytes: Uint8Array.of(127, 0, 0, 1) });
  t.equal(parseIpAddress('fe80::1%lo').version, 6);
  for (const text of ['::1', '::', '2001:db8::8:800:200c:417a', 'fe80::1', '1:2:3:4:5:6:7:8', '2001:db8:0:0:1::1'.replace('0:0:1', '0:0:1'), '10.0.0.255']) {
    const formatted = formatIpAddress(parseIpAddress(text).bytes);
    t.same(parseIpAddress(formatted).bytes, parseIpAddress(text).bytes, `${text} → ${formatted} round trip`);
  }
  t.equal(formatIpAddress(parseIpAddress('2001:db8:0:0:1:0:0:1').bytes), '2001:db8::1:0:0:1', 'RFC 5952: the first longest zero run');
  t.throws(() => parseIpAddress('localhost'), RangeError);
  const file = path();
  const w = new PcapWriter(file);
  w.udp({ address: '::1', port: 1 }, { address: '::1', port: 2 }, frame(4));
  w.udp({ address: '127.0.0.1', port: 1 }, { address: '::1', port: 2 }, frame(4));
  w.close();
  const froms = [...captureFrames(file, { udpPorts: [2] })].map((r) => r.from);
  t.same(froms, ['[::1]:1', '[::ffff:7f00:1]:1'], 'IPv6 packet; a v4 end next to a v6 one is written IPv4-mapped');
});

t.test('snaplen: a packet of exactly snaplen bytes is whole, one byte more is cut and counted', async (t) => {
  const file = path();
  const snaplen = 20 + 8 + 100;
  const w = new PcapWriter(file, { snaplen });
  w.udp(A, B, frame(100 - 8));
  w.udp(A, B, frame(100 - 8 + 1));
  w.close();
  t.equal(w.stats.truncated, 1);
  const packets = [...readCapture(file)].map((p) => [p.data.length, p.originalLength]);
  t.same(packets, [
    [snaplen, snaplen],
    [snaplen, snaplen + 1],
  ]);
  const records = [...captureFrames(file, { udpPorts: [B.port] })];
  t.same(records.map((r) => r.kind), ['frame', 'malformed']);
  t.match(records[1], { code: 'NDP_ERR_TRUNCATED', message: /snap length/ });
  t.throws(() => new PcapWriter(path(), { snaplen: 0 }), RangeError);
  t.throws(() => new PcapWriter(path(), { snaplen: MAX_SNAPLEN + 1 }), RangeError);
});

t.test('maxBytes with stop: the file ends at the limit exactly, later packets are counted, not written', async (t) => {
  const file = path();
  const record = PCAP_RECORD_HEADER_BYTES + 20 + 8 + frame(10).length;
  const maxBytes = PCAP_GLOBAL_HEADER_BYTES + 3 * record;
  let told = 0;
  const w = new PcapWriter(file, { maxBytes, onLimitReached: () => told++ });
  for (let i = 0; i < 5; i++) w.udp(A, B, frame(10));
  w.close();
  t.equal(told, 1, 'onLimitReached is called once');
  t.equal(statSync(file).size, maxBytes, 'three records fill the file to the byte');
  t.match(w.stats, { packets: 3, droppedAtLimit: 2, files: 1, bytes: maxBytes });
  const file2 = path();
  const w2 = new PcapWriter(file2, { maxBytes: maxBytes - 1 });
  for (let i = 0; i < 3; i++) w2.udp(A, B, frame(10));
  w2.close();
  t.match(w2.stats, { packets: 2, droppedAtLimit: 1 }, 'one byte less: the third does not fit');
  t.throws(() => new PcapWriter(path(), { maxBytes: PCAP_GLOBAL_HEADER_BYTES + PCAP_RECORD_HEADER_BYTES }), RangeError);
});

t.test('maxBytes with rotate: numbered files, maxFiles kept, open WebSocket connections start again in each file', async (t) => {
  const file = `${dir}/rot.pcap`;
  t.equal(rotatedPath(file, 0), file);
  t.equal(rotatedPath(file, 3), `${dir}/rot.3.pcap`);
  t.equal(rotatedPath('/x.y/capture', 2), '/x.y/capture.2');
  const w = new PcapWriter(file, { maxBytes: 4096, onLimit: 'rotate', maxFiles: 2 });
  const client = { address: '127.0.0.1', port: 50000 };
  const server = { address: '127.0.0.1', port: 7401 };
  w.wsOpen(client, server);
  for (let i = 0; i < 40; i++) w.wsMessage(server, client, frame(300));
  w.close();
  t.ok(w.stats.files >= 4, `rotated into ${w.stats.files} files`);
  t.equal(w.stats.droppedAtLimit, 0);
  t.same(w.files, [rotatedPath(file, w.stats.files - 2), rotatedPath(file, w.stats.files - 1)], 'the newest two are kept');
  t.notOk(existsSync(file), 'the oldest was deleted');
  let messages = 0;
  for (const kept of w.files) {
    t.ok(statSync(kept).size <= 4096);
    const first = [...readCapture(kept)][0]!;
    const decoded = decodePacket(first.linkType, first.data, first.originalLength);
    t.ok(decoded.kind === 'tcp' && decoded.flags === 0x02, `${kept}: starts with a SYN`);
    const records = [...captureFrames(kept)];
    t.ok(records.length > 0 && records.every((r) => r.kind === 'frame' && r.frame.crcOk), `${kept}: decodes on its own`);
    messages += records.length;
  }
  t.ok(messages > 0);
  t.throws(() => new PcapWriter(path(), { onLimit: 'wrap' as 'stop' }), RangeError);
  t.throws(() => new PcapWriter(path(), { maxFiles: 0 }), RangeError);
});

t.test('a message on a connection the tap never saw open is still captured (sender taken as client)', async (t) => {
  const file = path();
  const w = new PcapWriter(file);
  w.wsMessage({ address: '127.0.0.1', port: 1234 }, { address: '127.0.0.1', port: 7401 }, frame(8));
  w.wsClose({ address: '127.0.0.1', port: 1234 }, { address: '127.0.0.1', port: 7401 });
  w.wsMessage({ address: '127.0.0.1', port: 1 }, { address: '127.0.0.1', port: 2 }, new Uint8Array(0));
  w.close();
  const records = [...captureFrames(file)];
  t.equal(records.length, 1);
  t.match(records[0], { kind: 'frame', transport: 'ws', from: '127.0.0.1:1234' });
});

t.test('buffering: nothing lost at close, flush() writes what is buffered, taps after close are ignored', async (t) => {
  const file = path();
  const w = new PcapWriter(file, { bufferBytes: 1 << 20 });
  w.udp(A, B, frame(10));
  t.equal(statSync(file).size, 0, 'still in memory');
  w.flush();
  t.equal(statSync(file).size, PCAP_GLOBAL_HEADER_BYTES + PCAP_RECORD_HEADER_BYTES + 28 + 18);
  w.udp(A, B, frame(10));
  w.close();
  w.udp(A, B, frame(10));
  t.equal([...readCapture(file)].length, 2);
  const big = path();
  const w2 = new PcapWriter(big);
  w2.udp(A, B, new Uint8Array(MAX_IP_PAYLOAD));
  w2.close();
  t.equal(w2.stats.droppedOversize, 1, 'a datagram larger than one IP packet is counted, not written');
});

t.test('the word-at-a-time checksum equals RFC 1071 byte pairs for any offset and length', async (t) => {
  const plain = (bytes: Uint8Array): number => {
    let sum = 0;
    for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
    while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
    return ~sum & 0xffff;
  };
  const data = Uint8Array.from({ length: 70_001 }, (_, i) => (i * 131 + (i >> 7)) & 0xff);
  for (const [start, length] of [[0, 0], [0, 1], [1, 63], [0, 64], [1, 64], [2, 65], [3, 1500], [0, 65_515], [1, 70_000], [0, 70_001]] as const) {
    const slice = data.subarray(start, start + length);
    t.equal(checksumFinish(checksumAdd(0, slice)), plain(slice), `offset ${start}, ${length} bytes`);
  }
  const ffs = new Uint8Array(65_536).fill(0xff);
  t.equal(checksumFinish(checksumAdd(0, ffs)), plain(ffs), 'every word 0xffff (largest sums)');
});
