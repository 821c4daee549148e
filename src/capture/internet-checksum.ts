/**
 * The Internet checksum (RFC 1071): the 16-bit ones' complement of the ones' complement sum of
 * 16-bit words. IPv4 headers, UDP and TCP (over a pseudo-header) all use it; the pcap writer fills it
 * in so that tshark's checksum validation (`-o udp.check_checksum:TRUE`) reports every packet good.
 *
 * Long runs are summed as native 16-bit words and byte-swapped once at the end: the ones' complement
 * sum does not depend on byte order (RFC 1071 §2(B)). bench/pcap-writer.ts measures the tap.
 */

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
/** Below this many bytes the plain loop is as fast as setting up a word view. */
const WORD_PATH_MIN_BYTES = 64;

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** Adds `bytes[start, end)` as big-endian 16-bit words to a running (unfolded) sum. */
export function checksumAdd(sum: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  let i = start;
  if (LITTLE_ENDIAN && end - i >= WORD_PATH_MIN_BYTES && ((bytes.byteOffset + i) & 1) === 0) {
    const words = (end - i) >> 1;
    const view = new Uint16Array(bytes.buffer, bytes.byteOffset + i, words);
    let native = 0;
    // A double adds integers exactly up to 2^53: no folding needed inside the loop.
    for (let k = 0; k < words; k++) native += view[k]!;
    const folded = fold(native);
    sum += ((folded & 0xff) << 8) | (folded >> 8);
    i += words * 2;
  }
  for (; i + 1 < end; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  // An odd trailing byte is padded with a zero byte on the right (RFC 1071 §4.1).
  if (i < end) sum += bytes[i]! << 8;
  return sum;
}

/** Folds the carries of a running sum and returns the checksum to write. */
export function checksumFinish(sum: number): number {
  return ~fold(sum) & 0xffff;
}
