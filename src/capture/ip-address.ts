/**
 * Address text from Node's sockets to the bytes an IP header carries. Node reports IPv4 peers of a
 * dual-stack socket as IPv4-mapped IPv6 (`::ffff:127.0.0.1`); the capture writes those as IPv4 so
 * tshark shows the addresses the way `ss` and the logs do.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface IpAddress {
  readonly version: 4 | 6;
  /** 4 bytes for IPv4, 16 for IPv6. */
  readonly bytes: Uint8Array;
}

function parseV4(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

function parseV6(text: string): Uint8Array {
  // An embedded dotted quad (`::ffff:1.2.3.4`) is rewritten as its two hex words first.
  const hexOnly = text.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
    `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`,
  );
  const [head = '', rest] = hexOnly.split('::') as [string, string | undefined];
  const headWords = head === '' ? [] : head.split(':');
  const restWords = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? [] : new Array<string>(8 - headWords.length - restWords.length).fill('0');
  const out = new Uint8Array(16);
  [...headWords, ...zeros, ...restWords].forEach((word, i) => {
    const value = parseInt(word, 16);
    out[2 * i] = value >> 8;
    out[2 * i + 1] = value & 0xff;
  });
  return out;
}

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/** Parses an IPv4 or IPv6 address as Node reports it (a zone suffix `%lo` is ignored). */
export function parseIpAddress(text: string): IpAddress {
  const bare = text.replace(/%.*$/, '');
  if (isIPv4(bare)) return { version: 4, bytes: parseV4(bare) };
  if (isIPv6(bare)) {
    const bytes = parseV6(bare);
    if (V4_MAPPED_PREFIX.every((b, i) => bytes[i] === b)) return { version: 4, bytes: bytes.slice(12) };
    return { version: 6, bytes };
  }
  throw new RangeError(`not an IP address: '${text}'`);
}

/** Makes both ends of a packet the same IP version (an IPv4 end next to an IPv6 one becomes IPv4-mapped). */
export function sameFamily(a: IpAddress, b: IpAddress): [IpAddress, IpAddress] {
  if (a.version === b.version) return [a, b];
  const mapped = (x: IpAddress): IpAddress =>
    x.version === 6 ? x : { version: 6, bytes: Uint8Array.from([...V4_MAPPED_PREFIX, ...x.bytes]) };
  return [mapped(a), mapped(b)];
}

/** Text of an address read from a packet: dotted quad, or RFC 5952 compressed IPv6. */
export function formatIpAddress(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i]! << 8) | bytes[i + 1]!);
  // The longest run of two or more zero words becomes "::".
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}
