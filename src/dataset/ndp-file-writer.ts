/**
 * Streaming writer of .ndp files (NDP.md §10). Samples go to disk as they come (through one bounded
 * write buffer); the index follows them when the writer finishes, and the header is rewritten in
 * place with the final counts. Until then the header's index offset is 0, so a reader refuses a file
 * whose writer died (NDP_ERR_FILE_INCOMPLETE) and `ndp inspect --reindex` can recover its samples.
 * Nothing depends on time or randomness: identical input gives a byte-identical file.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { NdpError } from '../protocol/errors.js';
import { DST, SRC } from '../protocol/registry.js';
import { encodeSampleBody, type SampleTokens } from '../protocol/sample-body.js';
import { INDEX_CRC_BYTES, INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES, INDEX_MAGIC, encodeHeader, writeIndexEntry, type TokenizerIdentity } from './ndp-file-format.js';
import { MAX_FRAME_BYTES, fragmentCount, segmentedSize, writeSegments } from '../protocol/segmenter.js';

export interface NdpFileWriterOptions {
  /** Dataset name stored in the header. */
  readonly name: string;
  readonly tokenizer: TokenizerIdentity;
  /** Default SRC of the file and of samples appended without one. Defaults to TEXT_CORPUS. */
  readonly src?: number;
  /** DST of every sample frame. Defaults to EMBEDDING. */
  readonly dst?: number;
  /** Largest frame written; longer sample bodies are cut into several. Defaults to MAX_FRAME_BYTES, 65,543 (the largest v1 frame). */
  readonly maxFrameBytes?: number;
  /** Size of the write buffer. Defaults to 4 MiB. */
  readonly bufferBytes?: number;
}

/** Samples a file may hold: the transport header's sample index is a u32. */
export const MAX_FILE_SAMPLES = 0xffffffff;
/** Index entries per in-memory chunk (1 MiB each): no single huge reallocation for large files. */
const INDEX_CHUNK_ENTRIES = 65536;

export interface WrittenFile {
  readonly path: string;
  readonly sampleCount: number;
  readonly tokenCount: number;
  readonly bytes: number;
}

export class NdpFileWriter {
  private readonly src: number;
  private readonly dst: number;
  private readonly maxFrameBytes: number;
  private buffer: Buffer;
  private buffered = 0;
  /** File offset of buffer[0]. */
  private flushedBytes: number;
  /** Seq of the next frame: a file is one recorded stream, its frames numbered from 0. */
  private seq = 0;
  private samples = 0;
  private tokens = 0;
  private readonly indexChunks: Buffer[] = [];
  private state: 'open' | 'finished' | 'aborted' = 'open';

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly options: NdpFileWriterOptions,
    private readonly headerLength: number,
  ) {
    this.src = options.src ?? SRC.TEXT_CORPUS;
    this.dst = options.dst ?? DST.EMBEDDING;
    this.maxFrameBytes = options.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.buffer = Buffer.alloc(options.bufferBytes ?? 4 * 1024 * 1024);
    this.flushedBytes = headerLength;
  }

  /** Creates (or truncates) `path` and writes a provisional header. */
  static async create(path: string, options: NdpFileWriterOptions): Promise<NdpFileWriter> {
    const header = encodeHeader({ src: options.src ?? SRC.TEXT_CORPUS, dst: options.dst ?? DST.EMBEDDING, sampleCount: 0, tokenCount: 0, indexOffset: 0, tokenizer: options.tokenizer, name: options.name });
    fragmentCount(1, options.maxFrameBytes ?? MAX_FRAME_BYTES);
    const handle = await open(path, 'w');
    try {
      await handle.write(header, 0, header.length, 0);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return new NdpFileWriter(path, handle, options, header.length);
  }

  get sampleCount(): number {
    return this.samples;
  }

  get tokenCount(): number {
    return this.tokens;
  }

  /** Appends a sample (tokens and optional loss mask); returns its index. `src` defaults to the file's. */
  async append(sample: SampleTokens & { readonly src?: number }): Promise<number> {
    return this.appendBody(encodeSampleBody(sample), sample.tokens.length, sample.src);
  }

  /** Appends an already encoded sample body (§5) holding `tokenCount` tokens; returns its index. */
  async appendBody(body: Uint8Array, tokenCount: number, src: number = this.src): Promise<number> {
    if (this.state !== 'open') throw new Error(`NdpFileWriter for ${this.path} is ${this.state}`);
    if (this.samples >= MAX_FILE_SAMPLES) throw new NdpError('NDP_ERR_FILE_TOO_MANY_SAMPLES', `an .ndp file holds at most ${MAX_FILE_SAMPLES} samples`);
    const bytes = segmentedSize(body.length, this.maxFrameBytes);
    if (this.buffered + bytes > this.buffer.length) await this.flush();
    const target = bytes > this.buffer.length ? Buffer.alloc(bytes) : this.buffer;
    const at = target === this.buffer ? this.buffered : 0;
    const offset = this.flushedBytes + this.buffered;
    const { nextSeq } = writeSegments(target, at, { body, src, dst: this.dst, session: 0, seq: this.seq, epoch: 0, position: this.samples, sample: this.samples, source: 0 }, this.maxFrameBytes);
    if (target === this.buffer) {
      this.buffered += bytes;
    } else {
      await this.writeAll(target, this.flushedBytes);
      this.flushedBytes += bytes;
    }
    this.recordIndexEntry(offset, bytes, tokenCount);
    this.seq = nextSeq;
    this.tokens += tokenCount;
    return this.samples++;
  }

  private recordIndexEntry(offset: number, length: number, tokens: number): void {
    const slot = this.samples % INDEX_CHUNK_ENTRIES;
    if (slot === 0) this.indexChunks.push(Buffer.alloc(INDEX_CHUNK_ENTRIES * INDEX_ENTRY_BYTES));
    writeIndexEntry(this.indexChunks[this.indexChunks.length - 1]!, slot * INDEX_ENTRY_BYTES, { offset, length, tokens });
  }

  private async writeAll(bytes: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, position + done);
      done += bytesWritten;
    }
  }

  private async flush(): Promise<void> {
    if (this.buffered === 0) return;
    await this.writeAll(this.buffer.subarray(0, this.buffered), this.flushedBytes);
    this.flushedBytes += this.buffered;
    this.buffered = 0;
  }

  /** Writes the index, rewrites the header with the final counts (and `src`, when given, as the default SRC), closes the file. */
  async finish(overrides: { readonly src?: number } = {}): Promise<WrittenFile> {
    if (this.state !== 'open') throw new Error(`NdpFileWriter for ${this.path} is ${this.state}`);
    await this.flush();
    const indexOffset = this.flushedBytes;
    const head = Buffer.alloc(INDEX_HEADER_BYTES);
    head.set(INDEX_MAGIC, 0);
    head.writeBigUInt64BE(BigInt(this.samples), 8);
    let crc = crc32(head);
    let at = indexOffset;
    await this.writeAll(head, at);
    at += head.length;
    let left = this.samples;
    for (const chunk of this.indexChunks) {
      const used = chunk.subarray(0, Math.min(left, INDEX_CHUNK_ENTRIES) * INDEX_ENTRY_BYTES);
      crc = crc32(used, crc);
      await this.writeAll(used, at);
      at += used.length;
      left -= used.length / INDEX_ENTRY_BYTES;
    }
    const tail = Buffer.alloc(INDEX_CRC_BYTES);
    tail.writeUInt32BE(crc);
    await this.writeAll(tail, at);
    at += tail.length;
    const header = encodeHeader({ src: overrides.src ?? this.src, dst: this.dst, sampleCount: this.samples, tokenCount: this.tokens, indexOffset, tokenizer: this.options.tokenizer, name: this.options.name });
    if (header.length !== this.headerLength) throw new Error('header length changed while writing');
    await this.writeAll(header, 0);
    await this.handle.truncate(at);
    await this.handle.close();
    this.state = 'finished';
    return { path: this.path, sampleCount: this.samples, tokenCount: this.tokens, bytes: at };
  }

  /** Closes the file without an index (it stays NDP_ERR_FILE_INCOMPLETE; reindex recovers its samples). */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.flush().finally(() => this.handle.close());
  }
}
