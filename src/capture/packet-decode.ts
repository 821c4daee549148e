/**
 * From a captured packet's link layer down to its UDP datagram or TCP segment: the link types
 * tcpdump and Wireshark write on Linux (RAW, IPv4, IPv6, Ethernet with VLAN tags, BSD loopback,
 * Linux cooked v1 and v2), then IPv4 or IPv6 (extension headers skipped). IP fragments are reported
 * as such, not reassembled: on loopback (MTU 65536) NDP datagrams are never fragmented.
 */
import { formatIpAddress } from './ip-address.js';

export const LINKTYPE = Object.freeze({ NULL: 0, ETHERNET: 1, RAW: 101, LINUX_SLL: 113, IPV4: 228, IPV6: 229, LINUX_SLL2: 276 });

export type DecodedPacket =
  | { readonly kind: 'udp'; readonly src: string; readonly dst: string; readonly srcPort: number; readonly dstPort: number; readonly payload: Uint8Array; readonly cut: boolean }
  | {
      readonly kind: 'tcp';
      readonly src: string;
      readonly dst: string;
      readonly srcPort: number;
      readonly dstPort: number;
      readonly seq: number;
      readonly flags: number;
      readonly payload: Uint8Array;
      readonly cut: boolean;
    }
  | { readonly kind: 'ip-fragment'; readonly src: string; readonly dst: string }
  | { readonly kind: 'other' };

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = [0x8100, 0x88a8];
const OTHER: DecodedPacket = { kind: 'other' };

/** The IP packet inside a link-layer frame, or undefined when it carries something else. */
function ipOf(linkType: number, data: Uint8Array): Uint8Array | undefined {
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  const byEthertype = (type: number, at: number): Uint8Array | undefined =>
    type === ETHERTYPE_IPV4 || type === ETHERTYPE_IPV6 ? data.subarray(at) : undefined;
  switch (linkType) {
    case LINKTYPE.RAW:
    case LINKTYPE.IPV4:
    case LINKTYPE.IPV6:
      return data;
    case LINKTYPE.NULL: {
      if (data.length < 4) return undefined;
      // The address family is in the capturing host's byte order: AF_INET is 2 everywhere, AF_INET6 varies (10, 24, 28, 30).
      const littleEndian = view.getUint32(0, true);
      const family = littleEndian < 0x10000 ? littleEndian : view.getUint32(0, false);
      return family === 2 || family === 10 || family === 24 || family === 28 || family === 30 ? data.subarray(4) : undefined;
    }
    case LINKTYPE.ETHERNET: {
      let at = 12;
      if (data.length < at + 2) return undefined;
      let type = view.getUint16(at);
      while (ETHERTYPE_VLAN.includes(type) && data.length >= at + 6) {
        at += 4;
        type = view.getUint16(at);
      }
      return byEthertype(type, at + 2);
    }
    case LINKTYPE.LINUX_SLL:
      return data.length >= 16 ? byEthertype(view.getUint16(14), 16) : undefined;
    case LINKTYPE.LINUX_SLL2:
      return data.length >= 20 ? byEthertype(view.getUint16(0), 20) : undefined;
    default:
      return undefined;
  }
}

const IPV6_EXTENSIONS = new Set([0, 43, 60]);
const IPV6_FRAGMENT = 44;

/** Decodes a captured packet down to UDP or TCP. `originalLength` tells whether the capture cut it. */
export function decodePacket(linkType: number, data: Uint8Array, originalLength: number): DecodedPacket {
  const ip = ipOf(linkType, data);
  if (ip === undefined || ip.length < 1) return OTHER;
  const view = new DataView(ip.buffer, ip.byteOffset, ip.length);
  const version = ip[0]! >> 4;
  let protocol: number;
  let at: number;
  let end: number;
  let src: string;
  let dst: string;
  if (version === 4) {
    if (ip.length < 20) return OTHER;
    at = (ip[0]! & 0x0f) * 4;
    protocol = ip[9]!;
    src = formatIpAddress(ip.subarray(12, 16));
    dst = formatIpAddress(ip.subarray(16, 20));
    // More-fragments flag or a fragment offset: a piece of a larger datagram.
    if ((view.getUint16(6) & 0x3fff) !== 0) return { kind: 'ip-fragment', src, dst };
    end = Math.min(ip.length, view.getUint16(2) || ip.length);
  } else if (version === 6) {
    if (ip.length < 40) return OTHER;
    protocol = ip[6]!;
    at = 40;
    src = formatIpAddress(ip.subarray(8, 24));
    dst = formatIpAddress(ip.subarray(24, 40));
    end = Math.min(ip.length, 40 + view.getUint16(4));
    while (IPV6_EXTENSIONS.has(protocol) && at + 2 <= end) {
      protocol = ip[at]!;
      at += (ip[at + 1]! + 1) * 8;
    }
    if (protocol === IPV6_FRAGMENT) return { kind: 'ip-fragment', src, dst };
  } else {
    return OTHER;
  }
  const cut = data.length < originalLength;
  if (protocol === 17 && at + 8 <= end) {
    const udpEnd = Math.min(end, at + view.getUint16(at + 4));
    return { kind: 'udp', src, dst, srcPort: view.getUint16(at), dstPort: view.getUint16(at + 2), payload: ip.subarray(at + 8, udpEnd), cut };
  }
  if (protocol === 6 && at + 20 <= end) {
    const dataAt = at + (ip[at + 12]! >> 4) * 4;
    return {
      kind: 'tcp',
      src,
      dst,
      srcPort: view.getUint16(at),
      dstPort: view.getUint16(at + 2),
      seq: view.getUint32(at + 4),
      flags: ip[at + 13]!,
      payload: ip.subarray(Math.min(dataAt, end), end),
      cut,
    };
  }
  return OTHER;
}
