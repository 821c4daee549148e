/**
 * The .ndp file layout (NDP.md §10): a header, the samples as the SEGMENT frames that travel on the
 * wire (a file is a recorded stream, session 0), then an index for O(1) access by sample index.
 * Big-endian throughout.
 *
 * Header (`H` bytes, H a multiple of 8):
 * | off | size | field |
 * | --- | ---- | ----- |
 * | 0   | 8    | magic `89 4E 44 50 0D 0A 1A 0A` (`\x89NDP\r\n\x1a\n`: catches text-mode copies, never 0xAA) |
 * | 8   | 2    | file version (1) |
 * | 10  | 2    | header length H |
 * | 12  | 1    | default SRC |
 * | 13  | 1    | default DST |
 * | 14  | 2    | flags, 0 |
 * | 16  | 8    | sample count |
 * | 24  | 8    | token count |
 * | 32  | 8    | index offset (0 = the writer did not finish) |
 * | 40  | 4    | tokenizer vocab size |
 * | 44  | 4    | reserved, 0 |
 * | 48  | 32   | SHA-256 of the tokenizer's tokenizer.json |
 * | 80  | 2    | tokenizer name length a, then a bytes UTF-8 |
 * | …   | 2    | dataset name length b, then b bytes UTF-8 |
 * | …   | pad  | zeros up to H − 4 |
 * | H−4 | 4    | CRC-32 of bytes [0, H − 4) |
 *
 * Index (at the index offset, to the end of the file):
 * | off      | size | field |
 * | -------- | ---- | ----- |
 * | 0        | 8    | magic `NDPINDEX` |
 * | 8        | 8    | entry count N (= sample count) |
 * | 16 + 16i | 16   | entry i: file offset of the sample's first frame (u64), bytes of its frames (u32), token count (u32) |
 * | 16 + 16N | 4    | CRC-32 of bytes [0, 16 + 16N) of the index |
 */
import { crc32 } from 'node:zlib';
import { NdpError } from '../protocol/errors.js';

export const FILE_MAGIC = Uint8Array.of(0x89, 0x4e, 0x44, 0x50, 0x0d, 0x0a, 0x1a, 0x0a);
export const FILE_VERSION = 1;
/** Bytes of the fixed part of the header, before the tokenizer name. */
export const HEADER_FIXED_BYTES = 80;
/** Longest tokenizer or dataset name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 1024;
export const INDEX_MAGIC = Uint8Array.from(Buffer.from('NDPINDEX', 'latin1'));
export const INDEX_HEADER_BYTES = 16;
export const INDEX_ENTRY_BYTES = 16;
export const INDEX_CRC_BYTES = 4;

/** Identity of the tokenizer that produced a file's token ids. */
export interface TokenizerIdentity {
  readonly name: string;
  /** SHA-256 of its tokenizer.json, 64 hex digits (empty when unknown, as in legacy files). */
  readonly hash: string;
  readonly vocabSize: number;
}

export interface FileHeader {
  readonly version: number;
  readonly headerLength: number;
  readonly src: number;
  readonly dst: number;
  readonly sampleCount: number;
  readonly tokenCount: number;
  /** 0 when the writer did not finish (no index). */
  readonly indexOffset: number;
  readonly tokenizer: TokenizerIdentity;
  readonly name: string;
}

export interface IndexEntry {
  /** File offset of the sample's first frame. */
  readonly offset: number;
  /** Bytes of all its frames. */
  readonly length: number;
  readonly tokens: number;
}

function nameBytes(what: string, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > MAX_NAME_BYTES) throw new RangeError(`${what} is ${bytes.length} bytes of UTF-8, more than ${MAX_NAME_BYTES}`);
  return bytes;
}

function hashBytes(hash: string): Buffer {
  if (hash === '') return Buffer.alloc(32);
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new RangeError(`tokenizer hash must be 64 lower-case hex digits, got '${hash}'`);
  return Buffer.from(hash, 'hex');
}

/** Encodes a header; its length depends only on the two names. */
export function encodeHeader(header: Omit<FileHeader, 'version' | 'headerLength'>): Uint8Array {
  const tokenizerName = nameBytes('tokenizer name', header.tokenizer.name);
  const datasetName = nameBytes('dataset name', header.name);
  const length = Math.ceil((HEADER_FIXED_BYTES + 2 + tokenizerName.length + 2 + datasetName.length + 4) / 8) * 8;
  const out = Buffer.alloc(length);
  out.set(FILE_MAGIC, 0);
  out.writeUInt16BE(FILE_VERSION, 8);
  out.writeUInt16BE(length, 10);
  out.writeUInt8(header.src, 12);
  out.writeUInt8(header.dst, 13);
  out.writeBigUInt64BE(BigInt(header.sampleCount), 16);
  out.writeBigUInt64BE(BigInt(header.tokenCount), 24);
  out.writeBigUInt64BE(BigInt(header.indexOffset), 32);
  out.writeUInt32BE(header.tokenizer.vocabSize, 40);
  out.set(hashBytes(header.tokenizer.hash), 48);
  let at = HEADER_FIXED_BYTES;
  out.writeUInt16BE(tokenizerName.length, at);
  out.set(tokenizerName, at + 2);
  at += 2 + tokenizerName.length;
  out.writeUInt16BE(datasetName.length, at);
  out.set(datasetName, at + 2);
  out.writeUInt32BE(crc32(out.subarray(0, length - 4)), length - 4);
  return out;
}

/** Whether `bytes` starts with the .ndp magic (enough to choose between .ndp and a legacy frame file). */
export function hasFileMagic(bytes: Uint8Array): boolean {
  return bytes.length >= FILE_MAGIC.length && FILE_MAGIC.every((b, i) => bytes[i] === b);
}

function safeNumber(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new NdpError('NDP_ERR_FILE_BAD_HEADER', `${what} ${value} is beyond 2^53`);
  return Number(value);
}

/**
 * Reads the fixed part first (`prefix`, at least HEADER_FIXED_BYTES) to learn H, then the whole
 * header. Throws NDP_ERR_FILE_BAD_HEADER for a wrong magic, length or CRC and
 * NDP_ERR_UNSUPPORTED_VERSION for a version other than 1.
 */
export function headerLengthOf(prefix: Uint8Array): number {
  if (!hasFileMagic(prefix)) throw new NdpError('NDP_ERR_FILE_BAD_HEADER', 'not an .ndp file: the first 8 bytes are not the .ndp magic');
  const view = Buffer.from(prefix.buffer, prefix.byteOffset, prefix.length);
  const version = view.readUInt16BE(8);
  if (version !== FILE_VERSION) throw new NdpError('NDP_ERR_UNSUPPORTED_VERSION', `.ndp file version ${version}, this implementation reads ${FILE_VERSION}`);
  const length = view.readUInt16BE(10);
  if (length < HEADER_FIXED_BYTES + 8 || length % 8 !== 0) throw new NdpError('NDP_ERR_FILE_BAD_HEADER', `header length ${length} is impossible`);
  return length;
}

export function decodeHeader(bytes: Uint8Array): FileHeader {
  const headerLength = headerLengthOf(bytes);
  if (bytes.length < headerLength) throw new NdpError('NDP_ERR_FILE_TRUNCATED', `file of ${bytes.length} bytes is shorter than its ${headerLength}-byte header`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, headerLength);
  const stored = view.readUInt32BE(headerLength - 4);
  const computed = crc32(view.subarray(0, headerLength - 4));
  if (stored !== computed) throw new NdpError('NDP_ERR_FILE_BAD_HEADER', `header CRC-32 is 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`);
  let at = HEADER_FIXED_BYTES;
  const readName = (what: string): string => {
    if (at + 2 > headerLength - 4) throw new NdpError('NDP_ERR_FILE_BAD_HEADER', `${what} length lies outside the header`);
    const n = view.readUInt16BE(at);
    if (at + 2 + n > headerLength - 4) throw new NdpError('NDP_ERR_FILE_BAD_HEADER', `${what} of ${n} bytes overruns the header`);
    const text = view.toString('utf8', at + 2, at + 2 + n);
    at += 2 + n;
    return text;
  };
  const hash = view.subarray(48, 80);
  const tokenizerName = readName('tokenizer name');
  const name = readName('dataset name');
  return {
    version: FILE_VERSION,
    headerLength,
    src: view.readUInt8(12),
    dst: view.readUInt8(13),
    sampleCount: safeNumber(view.readBigUInt64BE(16), 'sample count'),
    tokenCount: safeNumber(view.readBigUInt64BE(24), 'token count'),
    indexOffset: safeNumber(view.readBigUInt64BE(32), 'index offset'),
    tokenizer: { name: tokenizerName, hash: hash.every((b) => b === 0) ? '' : hash.toString('hex'), vocabSize: view.readUInt32BE(40) },
    name,
  };
}

/** Total bytes of an index of `entries` entries, from its magic through its CRC. */
export function indexSize(entries: number): number {
  return INDEX_HEADER_BYTES + INDEX_ENTRY_BYTES * entries + INDEX_CRC_BYTES;
}

export function writeIndexEntry(out: Buffer, at: number, entry: IndexEntry): void {
  out.writeBigUInt64BE(BigInt(entry.offset), at);
  out.writeUInt32BE(entry.length, at + 8);
  out.writeUInt32BE(entry.tokens, at + 12);
}

export function readIndexEntry(bytes: Buffer, at: number): IndexEntry {
  return { offset: Number(bytes.readBigUInt64BE(at)), length: bytes.readUInt32BE(at + 8), tokens: bytes.readUInt32BE(at + 12) };
}
