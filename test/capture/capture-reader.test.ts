/** Reading captures: pcap in both byte orders and resolutions, pcapng blocks, link types, damage. */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import t from 'tap';
import { captureFrames } from '../../src/capture/capture-frames.js';
import { readCapture, type CaptureInfo } from '../../src/capture/capture-reader.js';
import { parseIpAddress } from '../../src/capture/ip-address.js';
import { udpPacket } from '../../src/capture/ip-packet.js';
import { decodePacket, LINKTYPE } from '../../src/capture/packet-decode.js';
import { PcapWriter } from '../../src/capture/pcap-writer.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { DST, SRC, TYP } from '../../src/protocol/registry.js';
import { tsharkMissing } from './tshark.js';
import { tempDir } from '../temp-dir.js';

const dir = tempDir(t, 'ndp-capture-reader-');
let n = 0;
const file = (bytes: Uint8Array, ext = 'pcap'): string => {
  const p = `${dir}/f${n++}.${ext}`;
  writeFileSync(p, bytes);
  return p;
};

const ndpFrame = encodeFrame({ src: SRC.CODE_REPO, dst: DST.LORA, typ: TYP.TOKEN_IDS, payload: Uint8Array.of(0, 0, 0, 42) });
const ipPacket = udpPacket(parseIpAddress('127.0.0.1'), 1111, parseIpAddress('127.0.0.2'), 2222, ndpFrame);

function pcap(littleEndian: boolean, nanos: boolean, linkType: number, packets: Uint8Array[], cutLast = 0): Uint8Array {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(24);
  const u32 = (b: Buffer, v: number, at: number): number => (littleEndian ? b.writeUInt32LE(v, at) : b.writeUInt32BE(v, at));
  const u16 = (b: Buffer, v: number, at: number): number => (littleEndian ? b.writeUInt16LE(v, at) : b.writeUInt16BE(v, at));
  u32(head, nanos ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  u16(head, 2, 4);
  u16(head, 4, 6);
  u32(head, 65535, 16);
  u32(head, linkType, 20);
  parts.push(head);
  packets.forEach((p, i) => {
    const rec = Buffer.alloc(16);
    u32(rec, 1_700_000_000 + i, 0);
    u32(rec, nanos ? 123_456_789 : 123_456, 4);
    u32(rec, p.length, 8);
    u32(rec, p.length, 12);
    parts.push(rec, Buffer.from(p));
  });
  const all = Buffer.concat(parts);
  return all.subarray(0, all.length - cutLast);
}

function block(littleEndian: boolean, type: number, body: Uint8Array): Buffer {
  const padded = Math.ceil(body.length / 4) * 4;
  const out = Buffer.alloc(12 + padded);
  const u32 = (v: number, at: number): number => (littleEndian ? out.writeUInt32LE(v, at) : out.writeUInt32BE(v, at));
  u32(type, 0);
  u32(out.length, 4);
  out.set(body, 8);
  u32(out.length, out.length - 4);
  return out;
}

function pcapng(littleEndian: boolean, packet: Uint8Array, linkType: number): Buffer {
  const b = (size: number): Buffer => Buffer.alloc(size);
  const shb = b(16);
  if (littleEndian) shb.writeUInt32LE(0x1a2b3c4d, 0);
  else shb.writeUInt32BE(0x1a2b3c4d, 0);
  shb.writeUInt16LE(1, 4);
  shb.writeInt32LE(-1, 8);
  shb.writeInt32LE(-1, 12);
  const w16 = (buf: Buffer, v: number, at: number): number => (littleEndian ? buf.writeUInt16LE(v, at) : buf.writeUInt16BE(v, at));
  const w32 = (buf: Buffer, v: number, at: number): number => (littleEndian ? buf.writeUInt32LE(v, at) : buf.writeUInt32BE(v, at));
  // IDB with if_tsresol = 9 (nanoseconds) and the end-of-options marker.
  const idb = b(8 + 8 + 4);
  w16(idb, linkType, 0);
  w32(idb, 262144, 4);
  w16(idb, 9, 8);
  w16(idb, 1, 10);
  idb[12] = 9;
  const epb = b(20 + packet.length);
  const ns = 1_700_000_000_123_456_789n;
  w32(epb, 0, 0);
  w32(epb, Number(ns >> 32n), 4);
  w32(epb, Number(ns & 0xffffffffn), 8);
  w32(epb, packet.length, 12);
  w32(epb, packet.length, 16);
  epb.set(packet, 20);
  const spb = b(4 + packet.length);
  w32(spb, packet.length, 0);
  spb.set(packet, 4);
  const custom = b(8);
  return Buffer.concat([block(littleEndian, 0x0a0d0d0a, shb), block(littleEndian, 1, idb), block(littleEndian, 0x00000bad, custom), block(littleEndian, 6, epb), block(littleEndian, 3, spb)]);
}

t.test('classic pcap: either byte order, micro- and nanosecond timestamps', async (t) => {
  for (const littleEndian of [true, false]) {
    for (const nanos of [false, true]) {
      const packets = [...readCapture(file(pcap(littleEndian, nanos, LINKTYPE.RAW, [ipPacket, ipPacket])))];
      t.equal(packets.length, 2);
      t.same(packets.map((p) => p.number), [1, 2]);
      t.ok(Math.abs(packets[0]!.time - (1_700_000_000 + (nanos ? 0.123456789 : 0.123456))) < 1e-6, `time (${littleEndian ? 'LE' : 'BE'}, ${nanos ? 'ns' : 'µs'})`);
      t.same([...packets[1]!.data], [...ipPacket]);
    }
  }
});

t.test('pcapng: SHB byte order, IDB tsresol, EPB, SPB, unknown blocks skipped, several sections', async (t) => {
  for (const littleEndian of [true, false]) {
    const info: CaptureInfo = { format: 'pcap', packets: 0, truncatedTail: false };
    const twoSections = Buffer.concat([pcapng(littleEndian, ipPacket, LINKTYPE.RAW), pcapng(!littleEndian, ipPacket, LINKTYPE.RAW)]);
    const packets = [...readCapture(file(twoSections, 'pcapng'), info)];
    t.equal(info.format, 'pcapng');
    t.equal(packets.length, 4, 'EPB + SPB per section');
    t.ok(Math.abs(packets[0]!.time - 1_700_000_000.123456789) < 1e-6, 'nanosecond resolution from if_tsresol');
    for (const p of packets) t.same([...p.data], [...ipPacket]);
    const frames = [...captureFrames(file(twoSections, 'pcapng'))];
    t.equal(frames.length, 4);
    t.ok(frames.every((r) => r.kind === 'frame' && r.frame.crcOk && r.from === '127.0.0.1:1111'));
  }
});

t.test('link types: RAW, IPv4, Ethernet (+VLAN), BSD loopback, Linux cooked v1 and v2', async (t) => {
  const ethernet = Buffer.concat([Buffer.alloc(12), Buffer.from([0x08, 0x00]), ipPacket]);
  const vlan = Buffer.concat([Buffer.alloc(12), Buffer.from([0x81, 0x00, 0, 5, 0x08, 0x00]), ipPacket]);
  const nullLink = Buffer.concat([Buffer.from([2, 0, 0, 0]), ipPacket]);
  const sll = Buffer.concat([Buffer.alloc(14), Buffer.from([0x08, 0x00]), ipPacket]);
  const sll2 = Buffer.concat([Buffer.from([0x08, 0x00]), Buffer.alloc(18), ipPacket]);
  const cases: Array<[string, number, Uint8Array]> = [
    ['raw', LINKTYPE.RAW, ipPacket],
    ['ipv4', LINKTYPE.IPV4, ipPacket],
    ['ethernet', LINKTYPE.ETHERNET, ethernet],
    ['vlan', LINKTYPE.ETHERNET, vlan],
    ['null', LINKTYPE.NULL, nullLink],
    ['sll', LINKTYPE.LINUX_SLL, sll],
    ['sll2', LINKTYPE.LINUX_SLL2, sll2],
  ];
  for (const [name, linkType, data] of cases) {
    t.match(decodePacket(linkType, data, data.length), { kind: 'udp', src: '127.0.0.1', dstPort: 2222 }, name);
  }
  t.match(decodePacket(147, ipPacket, ipPacket.length), { kind: 'other' }, 'unknown link type');
  const fragment = Uint8Array.from(ipPacket);
  fragment[6] = 0x20; // more fragments
  t.match(decodePacket(LINKTYPE.RAW, fragment, fragment.length), { kind: 'ip-fragment' });
  const info: CaptureInfo = { format: 'pcap', packets: 0, truncatedTail: false };
  t.equal([...captureFrames(file(pcap(true, false, LINKTYPE.RAW, [fragment, ipPacket])), {}, info)].length, 1);
  t.equal(info.ipFragments, 1, 'IP fragments are counted, not silently skipped');
});

t.test('damage: not a capture, truncated tail, bad block lengths', async (t) => {
  const notCapture = file(Buffer.from('hello world, not a capture'));
  t.throws(() => [...readCapture(notCapture)], { code: 'NDP_ERR_BAD_CAPTURE' });
  t.throws(() => [...readCapture(file(Buffer.alloc(2)))], { code: 'NDP_ERR_BAD_CAPTURE' });
  const info: CaptureInfo = { format: 'pcap', packets: 0, truncatedTail: false };
  const cut = [...readCapture(file(pcap(true, false, LINKTYPE.RAW, [ipPacket, ipPacket], 5)), info)];
  t.equal(cut.length, 1, 'the whole packets before the cut are returned');
  t.equal(info.truncatedTail, true);
  const good = pcapng(true, ipPacket, LINKTYPE.RAW);
  const badLength = Buffer.from(good);
  badLength.writeUInt32LE(13, 28 + 4); // the IDB's length: not a multiple of 4
  t.throws(() => [...readCapture(file(badLength, 'pcapng'))], { code: 'NDP_ERR_BAD_CAPTURE' });
  const mismatch = Buffer.from(good);
  mismatch.writeUInt32LE(999, 28 + 32 - 4); // the IDB's trailing length copy
  t.throws(() => [...readCapture(file(mismatch, 'pcapng'))], { code: 'NDP_ERR_BAD_CAPTURE' });
  const info2: CaptureInfo = { format: 'pcap', packets: 0, truncatedTail: false };
  t.equal([...readCapture(file(good.subarray(0, good.length - 3), 'pcapng'), info2)].length, 1, 'pcapng cut inside the SPB');
  t.equal(info2.truncatedTail, true);
});

t.test('a pcapng written by tshark from our pcap reads the same', { skip: tsharkMissing() }, async (t) => {
  const source = `${dir}/src.pcap`;
  const w = new PcapWriter(source);
  const c = { address: '127.0.0.1', port: 50001 };
  const s = { address: '127.0.0.1', port: 7401 };
  w.udp({ address: '127.0.0.1', port: 5 }, { address: '127.0.0.1', port: 7400 }, ndpFrame);
  w.wsOpen(c, s);
  w.wsMessage(s, c, Buffer.concat([ndpFrame, ndpFrame]));
  w.wsMessage(c, s, new Uint8Array(100_000));
  w.wsClose(c, s);
  w.close();
  const converted = `${dir}/converted.pcapng`;
  execFileSync('tshark', ['-r', source, '-F', 'pcapng', '-w', converted], { stdio: 'ignore' });
  const strip = (r: ReturnType<typeof captureFrames> extends Generator<infer R> ? R : never): unknown => ({ ...r, time: Math.round(r.time * 1e6) });
  const a = [...captureFrames(source)].map(strip);
  const b = [...captureFrames(converted)].map(strip);
  t.equal(a.length, 4, 'udp frame, two frames in one message, one malformed message');
  t.same(b, a);
});
