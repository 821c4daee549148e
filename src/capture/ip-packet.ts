/**
 * Builds the IP packets a capture file holds (LINKTYPE_RAW: the packet starts with its IP header).
 * IPv4 (RFC 791) or IPv6 (RFC 8200), carrying UDP (RFC 768) or TCP (RFC 9293), with every checksum
 * filled in. Only what a capture needs: no options, no fragmentation (a payload that does not fit one
 * IP packet is the caller's to split, see `MAX_IP_PAYLOAD`).
 */
import { checksumAdd, checksumFinish } from './internet-checksum.js';
import type { IpAddress } from './ip-address.js';

export const IPV4_HEADER_BYTES = 20;
export const IPV6_HEADER_BYTES = 40;
export const UDP_HEADER_BYTES = 8;
export const TCP_HEADER_BYTES = 20;
const PROTO_TCP = 6;
const PROTO_UDP = 17;
/** Largest transport segment (header + data) one IP packet carries here: IPv4's 16-bit total length minus its header. */
export const MAX_IP_PAYLOAD = 0xffff - IPV4_HEADER_BYTES;

export const TCP_FLAG = Object.freeze({ FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 });

export interface TcpFields {
  readonly seq: number;
  readonly ack: number;
  readonly flags: number;
  /** Receive window. Defaults to 65535. */
  readonly window?: number;
}

function ipHeaderBytes(version: 4 | 6): number {
  return version === 4 ? IPV4_HEADER_BYTES : IPV6_HEADER_BYTES;
}

let nextIpId = 1;

/** Writes the IP header for `transportLength` bytes of `protocol` and returns the header length. */
function writeIpHeader(out: Uint8Array, src: IpAddress, dst: IpAddress, protocol: number, transportLength: number): number {
  const view = new DataView(out.buffer, out.byteOffset, out.length);
  if (src.version === 4) {
    view.setUint8(0, 0x45);
    view.setUint16(2, IPV4_HEADER_BYTES + transportLength);
    view.setUint16(4, nextIpId);
    nextIpId = (nextIpId + 1) & 0xffff;
    view.setUint16(6, 0x4000); // don't fragment: the kernel sets it on these sockets too
    view.setUint8(8, 64);
    view.setUint8(9, protocol);
    out.set(src.bytes, 12);
    out.set(dst.bytes, 16);
    view.setUint16(10, checksumFinish(checksumAdd(0, out, 0, IPV4_HEADER_BYTES)));
    return IPV4_HEADER_BYTES;
  }
  view.setUint32(0, 0x60000000);
  view.setUint16(4, transportLength);
  view.setUint8(6, protocol);
  view.setUint8(7, 64);
  out.set(src.bytes, 8);
  out.set(dst.bytes, 24);
  return IPV6_HEADER_BYTES;
}

/** The sum over the pseudo-header that UDP and TCP checksums cover (RFC 768, RFC 8200 §8.1). */
function pseudoHeaderSum(src: IpAddress, dst: IpAddress, protocol: number, length: number): number {
  let sum = checksumAdd(0, src.bytes);
  sum = checksumAdd(sum, dst.bytes);
  return sum + protocol + (length & 0xffff) + Math.floor(length / 0x10000);
}

function checkFits(length: number): void {
  if (length > MAX_IP_PAYLOAD) throw new RangeError(`transport segment of ${length} bytes does not fit one IP packet (max ${MAX_IP_PAYLOAD})`);
}

/** An IP packet carrying one UDP datagram. */
export function udpPacket(src: IpAddress, srcPort: number, dst: IpAddress, dstPort: number, payload: Uint8Array): Uint8Array {
  const udpLength = UDP_HEADER_BYTES + payload.length;
  checkFits(udpLength);
  const ipBytes = ipHeaderBytes(src.version);
  const out = new Uint8Array(ipBytes + udpLength);
  writeIpHeader(out, src, dst, PROTO_UDP, udpLength);
  const udp = new DataView(out.buffer, ipBytes, UDP_HEADER_BYTES);
  udp.setUint16(0, srcPort);
  udp.setUint16(2, dstPort);
  udp.setUint16(4, udpLength);
  out.set(payload, ipBytes + UDP_HEADER_BYTES);
  const sum = checksumAdd(pseudoHeaderSum(src, dst, PROTO_UDP, udpLength), out, ipBytes, out.length);
  // RFC 768: a computed checksum of zero is sent as all ones (zero means "no checksum").
  udp.setUint16(6, checksumFinish(sum) || 0xffff);
  return out;
}

/** An IP packet carrying one TCP segment. */
export function tcpPacket(src: IpAddress, srcPort: number, dst: IpAddress, dstPort: number, tcp: TcpFields, payload: Uint8Array): Uint8Array {
  const tcpLength = TCP_HEADER_BYTES + payload.length;
  checkFits(tcpLength);
  const ipBytes = ipHeaderBytes(src.version);
  const out = new Uint8Array(ipBytes + tcpLength);
  writeIpHeader(out, src, dst, PROTO_TCP, tcpLength);
  const view = new DataView(out.buffer, ipBytes, TCP_HEADER_BYTES);
  view.setUint16(0, srcPort);
  view.setUint16(2, dstPort);
  view.setUint32(4, tcp.seq >>> 0);
  view.setUint32(8, tcp.flags & TCP_FLAG.ACK ? tcp.ack >>> 0 : 0);
  view.setUint8(12, (TCP_HEADER_BYTES / 4) << 4);
  view.setUint8(13, tcp.flags);
  view.setUint16(14, tcp.window ?? 0xffff);
  out.set(payload, ipBytes + TCP_HEADER_BYTES);
  view.setUint16(16, checksumFinish(checksumAdd(pseudoHeaderSum(src, dst, PROTO_TCP, tcpLength), out, ipBytes, out.length)));
  return out;
}
