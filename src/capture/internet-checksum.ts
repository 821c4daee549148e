/**
 * The Internet checksum (RFC 1071): the 16-bit ones' complement of the ones' complement sum of
 * 16-bit words. IPv4 headers, UDP and TCP (over a pseudo-header) all use it; the pcap writer fills it
 * in so that tshark's checksum validation (`-o udp.check_checksum:TRUE`) reports every packet good.
 */

/** Adds `bytes[start, end)` as big-endian 16-bit words to a running (unfolded) sum. */
export function checksumAdd(sum: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  let i = start;
  for (; i + 1 < end; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  // An odd trailing byte is padded with a zero byte on the right (RFC 1071 §4.1).
  if (i < end) sum += bytes[i]! << 8;
  // No folding here: a double adds integers exactly up to 2^53, far above any packet's sum.
  return sum;
}

/** Folds the carries of a running sum and returns the checksum to write. */
export function checksumFinish(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}
