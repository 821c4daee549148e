/**
 * Reader of .ndp files (NDP.md §10) and of seed `.qubgpu` files (a plain concatenation of v1
 * TOKEN_IDS frames, one sample per frame, every token trained on). Random access reads only the
 * bytes of one sample at its offset (a positional read, no mmap, no whole-file load) through a
 * cache bounded in bytes, reading one bounded window ahead when the misses are sequential;
 * `readBody` checks a record without decoding its tokens; sequential streaming reads large chunks.
 * A file many times larger than memory works: the index is read in blocks through its own bounded
 * cache.
 */
import { read as readFd } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { crc32 } from 'node:zlib';
import { NdpError, dropLabel, isNdpError } from '../protocol/errors.js';
import { readFrameAt } from '../protocol/frame.js';
import { DST, FRAME_HEADER_BYTES, FRAME_OVERHEAD, MAGIC, SRC, TYP } from '../protocol/registry.js';
import { BODY_HEADER_BYTES, BODY_VERSION, checkSampleBody, decodeSampleBody, sampleBodySize } from '../protocol/sample-body.js';
import { ByteLru } from './byte-lru.js';
import {
  HEADER_FIXED_BYTES,
  INDEX_CRC_BYTES,
  INDEX_ENTRY_BYTES,
  INDEX_HEADER_BYTES,
  INDEX_MAGIC,
  decodeHeader,
  hasFileMagic,
  headerLengthOf,
  indexSize,
  readIndexEntry,
  type FileHeader,
  type IndexEntry,
  type TokenizerIdentity,
} from './ndp-file-format.js';
import type { Sample, SampleSource } from './sample.js';
import { readSampleFrames } from './sample-frames.js';

/** What happens to a sample whose CRC-16 or CRC-32 fails while streaming: skipped and counted, or an error. */
export type CrcPolicy = 'skip' | 'fail';

export interface OpenNdpFileOptions {
  /** Fate of corrupt samples met by `samples()`. Defaults to 'skip' (counted in `stats().dropped`). */
  readonly crc?: CrcPolicy;
  /** Bytes of sample records the random-access cache holds. Defaults to 64 MiB; 0 disables it. */
  readonly cacheBytes?: number;
  /** Bytes of index blocks kept in memory. Defaults to 16 MiB. */
  readonly indexCacheBytes?: number;
  /** Size of one read when streaming, scanning or verifying the index. Defaults to 4 MiB. */
  readonly readChunkBytes?: number;
  /**
   * Bytes read at once when `readBody`/`readStored` miss the cache on the sample after the previous
   * miss (sequential access): the following samples are then served from that one read. Random
   * access reads one sample's bytes. Defaults to 256 KiB; 0 disables read-ahead.
   */
  readonly readAheadBytes?: number;
  /** Read the whole index once at open to check its CRC-32 and that it matches the body. Defaults to true. */
  readonly verifyIndex?: boolean;
  /** Dataset name; defaults to the header's, or the file name without its extension. */
  readonly name?: string;
}

/** A sample's body as stored, checked (frame CRC-16, body CRC-32, body layout) but its tokens not decoded. */
export interface StoredBody {
  readonly index: number;
  readonly src: number;
  readonly dst: number;
  readonly body: Uint8Array;
}

/** A sample as stored: its decoded fields plus its encoded body and DST. */
export interface StoredSample extends Sample {
  readonly dst: number;
  readonly body: Uint8Array;
}

export interface ReaderStats {
  /** Bytes read from the file since it was opened (header, index and samples). */
  readonly bytesRead: number;
  readonly reads: number;
  readonly cacheHits: number;
  readonly cacheMisses: number;
  /** Bytes the sample cache holds now, and its limit. */
  readonly cachedBytes: number;
  readonly cacheLimitBytes: number;
  readonly indexCachedBytes: number;
  /** Largest buffer the reader allocated for one read (chunk or record). */
  readonly largestReadBytes: number;
  /** Samples dropped (corrupt), by reason label (`bad_crc`, `body_crc`, …). */
  readonly dropped: Readonly<Record<string, number>>;
}

const UNKNOWN_TOKENIZER: TokenizerIdentity = Object.freeze({ name: 'unknown', hash: '', vocabSize: 0 });
const INDEX_BLOCK_ENTRIES = 4096;
const MiB = 1024 * 1024;

interface Layout {
  readonly format: 'ndp' | 'legacy';
  readonly header?: FileHeader;
  readonly sampleCount: number;
  readonly tokenCount: number;
  /** Legacy files: the index built by scanning (offset, frame bytes). */
  readonly legacyOffsets?: Float64Array;
  readonly legacyLengths?: Uint32Array;
  readonly legacyIgnoredFrames: number;
  readonly legacyCorruptFrames: number;
}

/**
 * Opens an .ndp file, or a legacy frame file (detected by its first byte 0xAA), as a SampleSource.
 * Errors: NDP_ERR_FILE_BAD_HEADER, NDP_ERR_FILE_TRUNCATED, NDP_ERR_FILE_INCOMPLETE (no index: the
 * writer did not finish), NDP_ERR_INDEX_MISMATCH (index CRC or index ≠ body); a legacy file with
 * bytes that are not frames is NDP_ERR_BAD_MAGIC. `ndp inspect --reindex` repairs all but the first.
 */
export async function openNdpFile(path: string, options: OpenNdpFileOptions = {}): Promise<NdpFile> {
  const handle = await open(path, 'r');
  try {
    const file = new NdpFile(path, handle, options);
    await file.load();
    return file;
  } catch (err) {
    await handle.close();
    throw err;
  }
}

export class NdpFile implements SampleSource {
  readonly crcPolicy: CrcPolicy;
  /** Checked records; their tokens are decoded on the first `read`/`readStored`, not by `readBody`. */
  private readonly cache: ByteLru<number, StoredBody | StoredSample>;
  private readonly readAheadBytes: number;
  /** The latest read-ahead: bytes [start, end) of the file, being read or read. */
  private readAheadWindow: { readonly start: number; readonly end: number; readonly bytes: Promise<Buffer> } | undefined;
  /** Index of the latest cache miss: a miss on the next one is sequential access (so is starting at 0). */
  private lastMiss = -1;
  /** Positional reads in flight: close() waits for them before closing the descriptor they use. */
  private readonly inflight = new Set<Promise<Buffer>>();
  private readonly indexBlocks: ByteLru<number, Buffer>;
  private readonly chunkBytes: number;
  private layout!: Layout;
  private fileSize = 0;
  private counters = { bytesRead: 0, reads: 0, cacheHits: 0, cacheMisses: 0, largestReadBytes: 0 };
  private readonly droppedByReason: Record<string, number> = {};
  private closed = false;
  private defaultSrc: number = SRC.TEXT_CORPUS;

  /** @internal use openNdpFile */
  constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly options: OpenNdpFileOptions,
  ) {
    this.crcPolicy = options.crc ?? 'skip';
    if (this.crcPolicy !== 'skip' && this.crcPolicy !== 'fail') throw new RangeError(`crc policy must be 'skip' or 'fail', got '${String(this.crcPolicy)}'`);
    this.cache = new ByteLru(options.cacheBytes ?? 64 * MiB);
    this.indexBlocks = new ByteLru(options.indexCacheBytes ?? 16 * MiB);
    this.chunkBytes = options.readChunkBytes ?? 4 * MiB;
    this.readAheadBytes = options.readAheadBytes ?? 256 * 1024;
    if (!Number.isSafeInteger(this.readAheadBytes) || this.readAheadBytes < 0) throw new RangeError(`readAheadBytes must be an integer ≥ 0, got ${this.readAheadBytes}`);
    if (!Number.isInteger(this.chunkBytes) || this.chunkBytes < 64 * 1024) throw new RangeError(`readChunkBytes must be an integer ≥ 65536, got ${this.chunkBytes}`);
  }

  /** 'ndp' for an .ndp file, 'legacy' for a headerless concatenation of v1 TOKEN_IDS frames. */
  get format(): 'ndp' | 'legacy' {
    return this.layout.format;
  }

  /** True when the file has no header and index (seed `.qubgpu`): its index was built by scanning. */
  get legacy(): boolean {
    return this.layout.format === 'legacy';
  }

  /** The decoded header (undefined for legacy files). */
  get header(): FileHeader | undefined {
    return this.layout.header;
  }

  get name(): string {
    return this.options.name ?? (this.layout.header?.name || basename(this.path, extname(this.path)));
  }

  /** Default SRC: the header's; for legacy files the SRC of the first frame (TEXT_CORPUS when empty). */
  get src(): number {
    return this.defaultSrc;
  }

  get dst(): number {
    return this.layout.header?.dst ?? DST.EMBEDDING;
  }

  get sampleCount(): number {
    return this.layout.sampleCount;
  }

  get tokenCount(): number {
    return this.layout.tokenCount;
  }

  get tokenizer(): TokenizerIdentity {
    return this.layout.header?.tokenizer ?? UNKNOWN_TOKENIZER;
  }

  get sizeBytes(): number {
    return this.fileSize;
  }

  /** Legacy files: frames that were not TOKEN_IDS samples (other TYP, or a payload not a multiple of 4) and were left out. */
  get legacyIgnoredFrames(): number {
    return this.layout.legacyIgnoredFrames;
  }

  /** Legacy files: frames whose CRC-16 failed during the scan (indexed; reading them drops them). */
  get legacyCorruptFrames(): number {
    return this.layout.legacyCorruptFrames;
  }

  stats(): ReaderStats {
    return {
      ...this.counters,
      cachedBytes: this.cache.bytes,
      cacheLimitBytes: this.cache.limitBytes,
      indexCachedBytes: this.indexBlocks.bytes,
      dropped: { ...this.droppedByReason },
    };
  }

  private readAt(position: number, length: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error(`${this.path} is closed`));
    const reading = this.readFully(position, length);
    this.inflight.add(reading);
    const done = (): void => void this.inflight.delete(reading);
    reading.then(done, done);
    return reading;
  }

  /**
   * `length` bytes at `position`. fs.read on the descriptor, not FileHandle.read: the promise API
   * costs about twice the CPU per read (measured: 12 µs against 6 µs for a 1 KiB read), and the
   * server's cache-miss path is one read per sample.
   */
  private readFully(position: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    return new Promise((resolve, reject) => {
      const step = (done: number): void => {
        readFd(this.handle.fd, out, done, length - done, position + done, (err, bytesRead) => {
          if (err !== null) return reject(err);
          if (bytesRead === 0) return reject(new NdpError('NDP_ERR_FILE_TRUNCATED', `${this.path}: ends at byte ${position + done}, expected ${position + length}`));
          if (done + bytesRead < length) return step(done + bytesRead);
          this.counters.bytesRead += length;
          this.counters.reads++;
          if (length > this.counters.largestReadBytes) this.counters.largestReadBytes = length;
          resolve(out);
        });
      };
      step(0);
    });
  }

  /** @internal */
  async load(): Promise<void> {
    this.fileSize = (await this.handle.stat()).size;
    if (this.fileSize === 0) {
      this.layout = { format: 'legacy', sampleCount: 0, tokenCount: 0, legacyOffsets: new Float64Array(0), legacyLengths: new Uint32Array(0), legacyIgnoredFrames: 0, legacyCorruptFrames: 0 };
      return;
    }
    const first = await this.readAt(0, Math.min(this.fileSize, HEADER_FIXED_BYTES));
    if (first[0] === MAGIC) {
      this.layout = await this.scanLegacy();
      return;
    }
    if (!hasFileMagic(first)) throw new NdpError('NDP_ERR_FILE_BAD_HEADER', `${this.path}: neither an .ndp file (magic \\x89NDP) nor a frame file (first byte 0xAA)`);
    if (this.fileSize < HEADER_FIXED_BYTES) throw new NdpError('NDP_ERR_FILE_TRUNCATED', `${this.path}: ${this.fileSize} bytes, shorter than an .ndp header`);
    const headerLength = headerLengthOf(first);
    if (this.fileSize < headerLength) throw new NdpError('NDP_ERR_FILE_TRUNCATED', `${this.path}: ${this.fileSize} bytes, shorter than its ${headerLength}-byte header`);
    const header = decodeHeader(await this.readAt(0, headerLength));
    this.defaultSrc = header.src;
    if (header.indexOffset === 0) {
      throw new NdpError('NDP_ERR_FILE_INCOMPLETE', `${this.path}: has no index (its writer did not finish); run 'ndp inspect --reindex ${this.path}' to recover its samples`);
    }
    const expectedSize = header.indexOffset + indexSize(header.sampleCount);
    if (header.indexOffset < headerLength || this.fileSize < expectedSize) {
      throw new NdpError('NDP_ERR_FILE_TRUNCATED', `${this.path}: ${this.fileSize} bytes, its header announces ${expectedSize}; run 'ndp inspect --reindex' to keep the intact samples`);
    }
    if (this.fileSize > expectedSize) throw new NdpError('NDP_ERR_INDEX_MISMATCH', `${this.path}: ${this.fileSize - expectedSize} bytes after the index`);
    const indexHead = await this.readAt(header.indexOffset, INDEX_HEADER_BYTES);
    if (!INDEX_MAGIC.every((b, i) => indexHead[i] === b)) throw new NdpError('NDP_ERR_INDEX_MISMATCH', `${this.path}: no index at offset ${header.indexOffset}`);
    const entries = Number(indexHead.readBigUInt64BE(8));
    if (entries !== header.sampleCount) throw new NdpError('NDP_ERR_INDEX_MISMATCH', `${this.path}: index holds ${entries} entries, header says ${header.sampleCount} samples`);
    this.layout = { format: 'ndp', header, sampleCount: header.sampleCount, tokenCount: header.tokenCount, legacyIgnoredFrames: 0, legacyCorruptFrames: 0 };
    if (this.options.verifyIndex ?? true) await this.verifyIndex(header, indexHead);
  }

  /** One pass over the index: its CRC-32, and that its entries tile the body exactly. */
  private async verifyIndex(header: FileHeader, indexHead: Buffer): Promise<void> {
    const mismatch = (why: string): NdpError => new NdpError('NDP_ERR_INDEX_MISMATCH', `${this.path}: ${why}; run 'ndp inspect --reindex' to rebuild it`);
    let crc = crc32(indexHead);
    let expectedOffset = header.headerLength;
    let tokens = 0;
    const perChunk = Math.floor(this.chunkBytes / INDEX_ENTRY_BYTES);
    for (let first = 0; first < header.sampleCount; first += perChunk) {
      const count = Math.min(perChunk, header.sampleCount - first);
      const bytes = await this.readAt(header.indexOffset + INDEX_HEADER_BYTES + first * INDEX_ENTRY_BYTES, count * INDEX_ENTRY_BYTES);
      crc = crc32(bytes, crc);
      for (let i = 0; i < count; i++) {
        const entry = readIndexEntry(bytes, i * INDEX_ENTRY_BYTES);
        if (entry.offset !== expectedOffset) throw mismatch(`index entry ${first + i} points at byte ${entry.offset}, the previous sample ends at ${expectedOffset}`);
        if (entry.length < FRAME_OVERHEAD) throw mismatch(`index entry ${first + i} has ${entry.length} bytes`);
        expectedOffset += entry.length;
        tokens += entry.tokens;
      }
    }
    const stored = (await this.readAt(header.indexOffset + INDEX_HEADER_BYTES + header.sampleCount * INDEX_ENTRY_BYTES, INDEX_CRC_BYTES)).readUInt32BE(0);
    if (stored !== crc) throw mismatch(`index CRC-32 is 0x${stored.toString(16)}, computed 0x${crc.toString(16)}`);
    if (expectedOffset !== header.indexOffset) throw mismatch(`index entries end at byte ${expectedOffset}, the body at ${header.indexOffset}`);
    if (tokens !== header.tokenCount) throw mismatch(`index counts ${tokens} tokens, header ${header.tokenCount}`);
  }

  /** Builds the index of a legacy frame file by reading it once from start to end. */
  private async scanLegacy(): Promise<Layout> {
    let offsets = new Float64Array(1024);
    let lengths = new Uint32Array(1024);
    let samples = 0;
    let tokens = 0;
    let ignored = 0;
    let corrupt = 0;
    let firstSrc: number | undefined;
    for await (const { offset, frame, bytes } of this.scanFrames(0, this.fileSize)) {
      if (frame.typ !== TYP.TOKEN_IDS || frame.len % 4 !== 0) {
        ignored++;
        continue;
      }
      if (!frame.crcOk) corrupt++;
      if (samples === offsets.length) {
        const grownOffsets = new Float64Array(offsets.length * 2);
        grownOffsets.set(offsets);
        offsets = grownOffsets;
        const grownLengths = new Uint32Array(lengths.length * 2);
        grownLengths.set(lengths);
        lengths = grownLengths;
      }
      offsets[samples] = offset;
      lengths[samples] = bytes;
      firstSrc ??= frame.src;
      samples++;
      tokens += frame.len / 4;
    }
    this.defaultSrc = firstSrc ?? SRC.TEXT_CORPUS;
    return { format: 'legacy', sampleCount: samples, tokenCount: tokens, legacyOffsets: offsets, legacyLengths: lengths, legacyIgnoredFrames: ignored, legacyCorruptFrames: corrupt };
  }

  /**
   * Every frame in [start, end), read in large chunks. Bytes that are not a frame are
   * NDP_ERR_BAD_MAGIC, a frame cut by `end` NDP_ERR_FILE_TRUNCATED.
   */
  private async *scanFrames(start: number, end: number): AsyncGenerator<{ offset: number; bytes: number; frame: NonNullable<ReturnType<typeof readFrameAt>>['frame'] }> {
    let chunkStart = start;
    while (chunkStart < end) {
      const chunk = await this.readAt(chunkStart, Math.min(this.chunkBytes, end - chunkStart));
      let at = 0;
      for (;;) {
        let read;
        try {
          read = readFrameAt(chunk, at);
        } catch (cause) {
          throw new NdpError('NDP_ERR_BAD_MAGIC', `${this.path}: byte ${chunkStart + at} is not the start of a frame; run 'ndp inspect --reindex' to keep the intact frames`, { cause });
        }
        if (read === undefined) break;
        yield { offset: chunkStart + at, bytes: read.end - at, frame: read.frame };
        at = read.end;
      }
      if (at === 0) {
        // Not even one frame fits the rest: a frame longer than the chunk, or the file ends inside it.
        const announced = chunk.length >= FRAME_HEADER_BYTES ? FRAME_OVERHEAD + ((chunk[4]! << 8) | chunk[5]!) : Infinity;
        if (chunkStart + announced > end) throw new NdpError('NDP_ERR_FILE_TRUNCATED', `${this.path}: the frame at byte ${chunkStart} ends beyond the end of the file (${end})`);
        const whole = await this.readAt(chunkStart, announced);
        const read = readFrameAt(whole, 0)!;
        yield { offset: chunkStart, bytes: announced, frame: read.frame };
        at = announced;
      }
      chunkStart += at;
    }
  }

  private async indexBlock(block: number): Promise<Buffer> {
    const cached = this.indexBlocks.get(block);
    if (cached !== undefined) return cached;
    const header = this.layout.header!;
    const first = block * INDEX_BLOCK_ENTRIES;
    const count = Math.min(INDEX_BLOCK_ENTRIES, header.sampleCount - first);
    const bytes = await this.readAt(header.indexOffset + INDEX_HEADER_BYTES + first * INDEX_ENTRY_BYTES, count * INDEX_ENTRY_BYTES);
    this.indexBlocks.set(block, bytes, bytes.length);
    return bytes;
  }

  private checkIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.layout.sampleCount) {
      throw new NdpError('NDP_ERR_SAMPLE_OUT_OF_RANGE', `${this.path}: sample ${index} out of range 0..${this.layout.sampleCount - 1}`);
    }
  }

  /** Where sample `index` lies in the file and how many tokens it holds. */
  async entry(index: number): Promise<IndexEntry> {
    this.checkIndex(index);
    const known = this.knownEntry(index);
    if (known !== undefined) return known;
    const block = await this.indexBlock(Math.floor(index / INDEX_BLOCK_ENTRIES));
    return readIndexEntry(block, (index % INDEX_BLOCK_ENTRIES) * INDEX_ENTRY_BYTES);
  }

  /** The entry when it needs no read (legacy index in memory, or its index block cached): streaming skips an await per sample. */
  private knownEntry(index: number): IndexEntry | undefined {
    const { legacyOffsets, legacyLengths } = this.layout;
    if (legacyOffsets !== undefined && legacyLengths !== undefined) {
      const length = legacyLengths[index]!;
      return { offset: legacyOffsets[index]!, length, tokens: (length - FRAME_OVERHEAD) / 4 };
    }
    const block = this.indexBlocks.get(Math.floor(index / INDEX_BLOCK_ENTRIES));
    return block === undefined ? undefined : readIndexEntry(block, (index % INDEX_BLOCK_ENTRIES) * INDEX_ENTRY_BYTES);
  }

  /** Token counts of samples [from, to), from the index alone (no sample is read). */
  async *tokenCounts(from = 0, to = this.sampleCount): AsyncGenerator<number> {
    for (let i = from; i < to; i++) yield (await this.entry(i)).tokens;
  }

  /**
   * The record's frames checked exactly as a decode would (frame CRC-16, body CRC-32, frames that
   * are one whole sample, body version and length matching its token count) without decoding its
   * tokens: what the server sends is the body as stored.
   */
  private checkRecord(index: number, record: Buffer): StoredBody {
    if (this.legacy) {
      const read = readFrameAt(record, 0);
      if (read === undefined || read.end !== record.length) throw new NdpError('NDP_ERR_INDEX_MISMATCH', `${this.path}: sample ${index} is not one frame`);
      if (!read.frame.crcOk) throw new NdpError('NDP_ERR_BAD_CRC', `${this.path}: sample ${index}: CRC-16 of its frame does not match`);
      // A v1 TOKEN_IDS payload is already the token part of a sample body (§5): prefix the body header.
      // The scan indexed only payloads of whole int32 tokens, so the body is well formed.
      const body = Buffer.alloc(BODY_HEADER_BYTES + read.frame.len);
      body[0] = BODY_VERSION;
      body.writeUInt32BE(read.frame.len / 4, 4);
      body.set(read.frame.payload, BODY_HEADER_BYTES);
      return { index, src: read.frame.src, dst: read.frame.dst, body };
    }
    const decoded = readSampleFrames(record, index);
    checkSampleBody(decoded.body);
    return { index, src: decoded.src, dst: decoded.dst, body: decoded.body };
  }

  private countDrop(err: unknown): void {
    if (isNdpError(err)) {
      const label = dropLabel(err.code);
      this.droppedByReason[label] = (this.droppedByReason[label] ?? 0) + 1;
    }
  }

  /**
   * The sample at `index`, with its body. A corrupt sample throws its NdpError (NDP_ERR_BAD_CRC,
   * NDP_ERR_BODY_CRC, NDP_ERR_INDEX_MISMATCH, NDP_ERR_BAD_BODY) under either CRC policy, counted in
   * `stats().dropped`: random access has no "next" sample to skip to, the caller decides.
   */
  async readStored(index: number): Promise<StoredSample> {
    const stored = await this.readChecked(index);
    if ('tokens' in stored) return stored;
    const { tokens, lossMask } = decodeSampleBody(stored.body);
    const sample: StoredSample = { ...stored, tokens, lossMask };
    this.cache.set(index, sample, sample.body.byteLength + tokens.byteLength + lossMask.byteLength);
    return sample;
  }

  async read(index: number): Promise<Sample> {
    const { src, tokens, lossMask } = await this.readStored(index);
    return { index, src, tokens, lossMask };
  }

  /**
   * The encoded body of sample `index` (what a server sends), checked like `readStored` (same
   * errors, counted the same way) but with no token decoding.
   */
  async readBody(index: number): Promise<Uint8Array> {
    return (await this.readChecked(index)).body;
  }

  /** The checked record of `index`, from the cache or the file (then cached). Corrupt samples throw, counted in `stats().dropped`. */
  private async readChecked(index: number): Promise<StoredBody | StoredSample> {
    const cached = this.cache.get(index);
    if (cached !== undefined) {
      this.counters.cacheHits++;
      return cached;
    }
    this.counters.cacheMisses++;
    this.checkIndex(index);
    const entry = this.knownEntry(index) ?? (await this.entry(index));
    const { record, shared } = await this.recordBytes(index, entry);
    let stored: StoredBody;
    try {
      stored = this.checkRecord(index, record);
    } catch (err) {
      this.countDrop(err);
      throw err;
    }
    // A body that is a view into a read-ahead window would keep the whole window alive in the cache.
    if (shared && this.cache.limitBytes > 0) stored = { ...stored, body: new Uint8Array(stored.body) };
    this.cache.set(index, stored, stored.body.byteLength);
    return stored;
  }

  /**
   * The bytes of one sample's record: from the read-ahead window, or a read (one window long when
   * access is sequential). `shared`: the bytes are a view into a window that other samples use.
   */
  private async recordBytes(index: number, entry: IndexEntry): Promise<{ record: Buffer; shared: boolean }> {
    const sequential = index === this.lastMiss + 1;
    this.lastMiss = index;
    const window = this.readAheadWindow;
    if (window !== undefined && entry.offset >= window.start && entry.offset + entry.length <= window.end) {
      const bytes = await window.bytes;
      return { record: bytes.subarray(entry.offset - window.start, entry.offset - window.start + entry.length), shared: true };
    }
    if (!sequential || this.readAheadBytes <= entry.length) return { record: await this.readAt(entry.offset, entry.length), shared: false };
    const bodyEnd = this.legacy ? this.fileSize : this.layout.header!.indexOffset;
    const end = Math.min(bodyEnd, entry.offset + this.readAheadBytes);
    const bytes = this.readAt(entry.offset, end - entry.offset);
    this.readAheadWindow = { start: entry.offset, end, bytes };
    // A failed window is read again per sample (the error then reaches the sample it concerns).
    bytes.catch(() => {
      if (this.readAheadWindow?.bytes === bytes) this.readAheadWindow = undefined;
    });
    return { record: (await bytes).subarray(0, entry.length), shared: true };
  }

  /**
   * Samples [from, to) in order, read in chunks of `readChunkBytes` (nothing is cached). Corrupt
   * samples follow the CRC policy: 'skip' counts them in `stats().dropped` and goes on, 'fail' throws.
   */
  async *samples(range: { readonly from?: number; readonly to?: number } = {}): AsyncGenerator<StoredSample> {
    const from = range.from ?? 0;
    const to = Math.min(range.to ?? this.sampleCount, this.sampleCount);
    if (from >= to) return;
    this.checkIndex(from);
    let chunk: Buffer = Buffer.alloc(0);
    let chunkStart = 0;
    for (let i = from; i < to; i++) {
      const entry = this.knownEntry(i) ?? (await this.entry(i));
      if (entry.offset < chunkStart || entry.offset + entry.length > chunkStart + chunk.length) {
        const last = to < this.sampleCount ? (await this.entry(to)).offset : this.legacy ? this.fileSize : this.layout.header!.indexOffset;
        chunkStart = entry.offset;
        chunk = await this.readAt(chunkStart, Math.max(entry.length, Math.min(this.chunkBytes, last - chunkStart)));
      }
      const record = chunk.subarray(entry.offset - chunkStart, entry.offset - chunkStart + entry.length);
      let sample: StoredSample;
      try {
        const stored = this.checkRecord(i, record);
        sample = { ...stored, ...decodeSampleBody(stored.body) };
      } catch (err) {
        this.countDrop(err);
        if (this.crcPolicy === 'fail' || !isNdpError(err)) throw err;
        continue;
      }
      yield sample;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cache.clear();
    this.indexBlocks.clear();
    this.readAheadWindow = undefined;
    // The reads use the descriptor, not the handle: closing it under them could read another file.
    await Promise.allSettled([...this.inflight]);
    await this.handle.close();
  }
}
