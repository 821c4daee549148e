/**
 * Reads packet capture files: classic libpcap (either byte order, microsecond or nanosecond
 * timestamps) and pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html: Section
 * Header, Interface Description, Enhanced Packet, Simple Packet and the obsolete Packet block; other
 * blocks are skipped). The file is read in chunks, so memory stays bounded by the largest packet.
 *
 * A file that is not a capture, or a block that contradicts itself, is NDP_ERR_BAD_CAPTURE. A file
 * that ends inside its last record (tcpdump killed mid-write) is not an error: the packets before it
 * are returned and `truncatedTail` says so.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { NdpError } from '../protocol/errors.js';

export interface CapturedPacket {
  /** 1-based, as tshark's frame.number. */
  readonly number: number;
  /** Seconds since the Unix epoch. */
  readonly time: number;
  /** LINKTYPE_* of the interface the packet came from. */
  readonly linkType: number;
  /** The captured bytes (a view valid until the next packet is read). */
  readonly data: Uint8Array;
  /** The packet's length on the wire (more than data.length when cut at the snap length). */
  readonly originalLength: number;
}

export interface CaptureInfo {
  format: 'pcap' | 'pcapng';
  packets: number;
  /** The file ended inside a record. */
  truncatedTail: boolean;
  /** IP fragments seen (by captureFrames): not reassembled, so what they carry is not decoded. */
  ipFragments?: number;
}

const PCAP_MAGIC_MICROS = 0xa1b2c3d4;
const PCAP_MAGIC_NANOS = 0xa1b23c4d;
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const BLOCK_IDB = 1;
const BLOCK_PB = 2;
const BLOCK_SPB = 3;
const BLOCK_EPB = 6;
const OPTION_IF_TSRESOL = 9;
/** Largest record or block accepted: a sanity bound far above any real packet (pcapng allows 16 MiB blocks in practice). */
export const MAX_CAPTURE_RECORD = 64 * 1024 * 1024;
const CHUNK = 1 << 20;

function bad(message: string): NdpError {
  return new NdpError('NDP_ERR_BAD_CAPTURE', message);
}

/** Sequential reader over a file descriptor with a refillable window. */
class ChunkReader {
  private buffer = Buffer.alloc(CHUNK);
  private start = 0;
  private end = 0;
  private eof = false;
  /** File offset of buffer[start]. */
  offset = 0;

  constructor(private readonly fd: number) {}

  /** Makes `n` bytes available; false at end of file before that. */
  ensure(n: number): boolean {
    while (this.end - this.start < n) {
      if (this.eof) return false;
      if (this.start > 0) {
        this.buffer.copy(this.buffer, 0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      }
      if (this.buffer.length - this.end < Math.max(n - this.end, CHUNK / 4)) {
        const grown = Buffer.alloc(Math.max(this.buffer.length * 2, n + CHUNK));
        this.buffer.copy(grown, 0, 0, this.end);
        this.buffer = grown;
      }
      const read = readSync(this.fd, this.buffer, this.end, this.buffer.length - this.end, null);
      if (read === 0) this.eof = true;
      this.end += read;
    }
    return true;
  }

  available(): number {
    return this.end - this.start;
  }

  /** A view of the next `n` bytes (call ensure first), without consuming them. */
  peek(n: number): Buffer {
    return this.buffer.subarray(this.start, this.start + n);
  }

  consume(n: number): void {
    this.start += n;
    this.offset += n;
  }
}

interface Interface {
  linkType: number;
  /** Timestamp units per second. */
  unitsPerSecond: bigint;
}

/**
 * Yields every packet of a pcap or pcapng file, in file order. `info` is filled in as reading goes
 * (complete once the generator is done).
 */
export function* readCapture(path: string, info: CaptureInfo = { format: 'pcap', packets: 0, truncatedTail: false }): Generator<CapturedPacket> {
  const fd = openSync(path, 'r');
  try {
    const reader = new ChunkReader(fd);
    if (!reader.ensure(4)) throw bad(`${path}: ${reader.available()} bytes is too short for a capture file`);
    const head = reader.peek(4);
    const be = head.readUInt32BE(0);
    const le = head.readUInt32LE(0);
    if (be === PCAPNG_SHB) {
      info.format = 'pcapng';
      yield* readPcapng(reader, info);
    } else if ([PCAP_MAGIC_MICROS, PCAP_MAGIC_NANOS].includes(be) || [PCAP_MAGIC_MICROS, PCAP_MAGIC_NANOS].includes(le)) {
      info.format = 'pcap';
      yield* readPcap(reader, info);
    } else {
      throw bad(`${path}: not a pcap or pcapng file (starts with 0x${be.toString(16).padStart(8, '0')})`);
    }
  } finally {
    closeSync(fd);
  }
}

function* readPcap(reader: ChunkReader, info: CaptureInfo): Generator<CapturedPacket> {
  if (!reader.ensure(24)) throw bad('pcap global header truncated');
  const header = reader.peek(24);
  const littleEndian = header.readUInt32LE(0) === PCAP_MAGIC_MICROS || header.readUInt32LE(0) === PCAP_MAGIC_NANOS;
  const u32 = (b: Buffer, at: number): number => (littleEndian ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const nanos = u32(header, 0) === PCAP_MAGIC_NANOS;
  // The upper bits of the link-type field carry FCS information (pcap-savefile(5)); the type is the low 16.
  const linkType = u32(header, 20) & 0xffff;
  reader.consume(24);
  while (reader.ensure(1)) {
    if (!reader.ensure(16)) {
      info.truncatedTail = true;
      return;
    }
    const record = reader.peek(16);
    const seconds = u32(record, 0);
    const fraction = u32(record, 4);
    const captured = u32(record, 8);
    const original = u32(record, 12);
    if (captured > MAX_CAPTURE_RECORD) throw bad(`pcap record at offset ${reader.offset} claims ${captured} captured bytes`);
    if (!reader.ensure(16 + captured)) {
      info.truncatedTail = true;
      return;
    }
    const data = reader.peek(16 + captured).subarray(16);
    info.packets++;
    yield { number: info.packets, time: seconds + fraction / (nanos ? 1e9 : 1e6), linkType, data, originalLength: original };
    reader.consume(16 + captured);
  }
}

function* readPcapng(reader: ChunkReader, info: CaptureInfo): Generator<CapturedPacket> {
  let littleEndian = true;
  let interfaces: Interface[] = [];
  let snaplens: number[] = [];
  while (reader.ensure(1)) {
    if (!reader.ensure(12)) {
      info.truncatedTail = true;
      return;
    }
    let head = reader.peek(12);
    const type = head.readUInt32LE(0);
    if (type === PCAPNG_SHB) {
      // The Section Header's byte-order magic decides how this section's numbers are read.
      const magic = head.readUInt32LE(8);
      if (magic === PCAPNG_BYTE_ORDER_MAGIC) littleEndian = true;
      else if (head.readUInt32BE(8) === PCAPNG_BYTE_ORDER_MAGIC) littleEndian = false;
      else throw bad(`pcapng section header at offset ${reader.offset} has no byte-order magic`);
      interfaces = [];
      snaplens = [];
    }
    const u32 = (b: Buffer, at: number): number => (littleEndian ? b.readUInt32LE(at) : b.readUInt32BE(at));
    const u16 = (b: Buffer, at: number): number => (littleEndian ? b.readUInt16LE(at) : b.readUInt16BE(at));
    const blockType = u32(head, 0);
    const length = u32(head, 4);
    if (length < 12 || length % 4 !== 0 || length > MAX_CAPTURE_RECORD) throw bad(`pcapng block at offset ${reader.offset} has length ${length}`);
    if (!reader.ensure(length)) {
      info.truncatedTail = true;
      return;
    }
    head = reader.peek(length);
    if (u32(head, length - 4) !== length) throw bad(`pcapng block at offset ${reader.offset}: trailing length ${u32(head, length - 4)} ≠ ${length}`);
    const body = head.subarray(8, length - 4);
    const packet = (interfaceId: number, high: number, low: number, captured: number, original: number, dataAt: number): CapturedPacket => {
      const iface = interfaces[interfaceId];
      if (iface === undefined) throw bad(`pcapng packet at offset ${reader.offset} names interface ${interfaceId}, of ${interfaces.length} described`);
      if (dataAt + captured > body.length) throw bad(`pcapng packet at offset ${reader.offset} claims ${captured} bytes in a ${length}-byte block`);
      const units = (BigInt(high) << 32n) | BigInt(low);
      const whole = units / iface.unitsPerSecond;
      const time = Number(whole) + Number(units - whole * iface.unitsPerSecond) / Number(iface.unitsPerSecond);
      info.packets++;
      return { number: info.packets, time, linkType: iface.linkType, data: body.subarray(dataAt, dataAt + captured), originalLength: original };
    };
    if (blockType === BLOCK_IDB) {
      if (body.length < 8) throw bad(`pcapng interface block at offset ${reader.offset} is too short`);
      interfaces.push({ linkType: u16(body, 0), unitsPerSecond: tsResolution(body, littleEndian) });
      snaplens.push(u32(body, 4));
    } else if (blockType === BLOCK_EPB) {
      if (body.length < 20) throw bad(`pcapng enhanced packet block at offset ${reader.offset} is too short`);
      yield packet(u32(body, 0), u32(body, 4), u32(body, 8), u32(body, 12), u32(body, 16), 20);
    } else if (blockType === BLOCK_PB) {
      if (body.length < 20) throw bad(`pcapng packet block at offset ${reader.offset} is too short`);
      yield packet(u16(body, 0), u32(body, 4), u32(body, 8), u32(body, 12), u32(body, 16), 20);
    } else if (blockType === BLOCK_SPB) {
      if (body.length < 4) throw bad(`pcapng simple packet block at offset ${reader.offset} is too short`);
      // A Simple Packet Block has no captured length: it is the original length cut to the snap length of interface 0.
      const original = u32(body, 0);
      const snaplen = snaplens[0] || Number.MAX_SAFE_INTEGER;
      const iface = interfaces[0];
      if (iface === undefined) throw bad(`pcapng simple packet block at offset ${reader.offset} before any interface block`);
      const captured = Math.min(original, snaplen, body.length - 4);
      info.packets++;
      yield { number: info.packets, time: 0, linkType: iface.linkType, data: body.subarray(4, 4 + captured), originalLength: original };
    }
    reader.consume(length);
  }
}

/** The if_tsresol option of an Interface Description Block body (default: microseconds). */
function tsResolution(body: Buffer, littleEndian: boolean): bigint {
  let at = 8;
  while (at + 4 <= body.length) {
    const code = littleEndian ? body.readUInt16LE(at) : body.readUInt16BE(at);
    const length = littleEndian ? body.readUInt16LE(at + 2) : body.readUInt16BE(at + 2);
    if (code === 0) break;
    if (code === OPTION_IF_TSRESOL && length >= 1 && at + 4 < body.length) {
      const value = body[at + 4]!;
      // Most significant bit set: a power of two; clear: a power of ten.
      return value & 0x80 ? 1n << BigInt(value & 0x7f) : 10n ** BigInt(value);
    }
    at += 4 + Math.ceil(length / 4) * 4;
  }
  return 1_000_000n;
}
