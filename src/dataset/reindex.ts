/**
 * Rebuilds an .ndp file from the frames of its body (`ndp inspect --reindex`, NDP.md §10.4): for a
 * file whose index is missing (writer died), damaged or wrong, whose tail is cut, whose header is
 * damaged, or a legacy frame file. Every intact sample is kept, in order, renumbered from 0; every
 * sample or byte range that is not kept is counted under a reason. Bytes that are not frames are
 * skipped by searching the next magic byte whose frame passes its CRC-16 (resynchronisation).
 */
import { open, rename, rm } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { crc32 } from 'node:zlib';
import { readFrameAt } from '../protocol/frame.js';
import { DST, FRAME_HEADER_BYTES, FRAME_OVERHEAD, MAGIC, SRC, TYP } from '../protocol/registry.js';
import { BODY_HEADER_BYTES, BODY_VERSION, decodeSampleBody } from '../protocol/sample-body.js';
import { readTransportHeader } from '../protocol/transport-header.js';
import { HEADER_FIXED_BYTES, INDEX_MAGIC, decodeHeader, hasFileMagic, headerLengthOf, type FileHeader } from './ndp-file-format.js';
import { NdpFileWriter } from './ndp-file-writer.js';

export interface ReindexOptions {
  /** Where the rebuilt file goes. Defaults to replacing `path` (written beside it, then renamed). */
  readonly out?: string;
  /** Size of one read. Defaults to 4 MiB. */
  readonly readChunkBytes?: number;
}

export interface ReindexResult {
  readonly out: string;
  /** 'ndp' when the header could be read, 'legacy' for a frame file, 'damaged' when the header was unreadable. */
  readonly source: 'ndp' | 'legacy' | 'damaged';
  readonly kept: number;
  readonly tokens: number;
  /** What was not kept, by reason: `bad_crc` / `body_crc` / `bad_body` / `incomplete` samples, `garbage_bytes`. */
  readonly dropped: Readonly<Record<string, number>>;
  /** Samples the damaged file's header announced (undefined when it had none). */
  readonly announced?: number;
}

interface Partial {
  sample: number;
  src: number;
  fragCount: number;
  next: number;
  bodyCrc: number;
  body: Buffer;
}

/** Rebuilds the index of `path` from its body; see the module comment. */
export async function reindexNdpFile(path: string, options: ReindexOptions = {}): Promise<ReindexResult> {
  const chunkBytes = options.readChunkBytes ?? 4 * 1024 * 1024;
  const handle = await open(path, 'r');
  const dropped: Record<string, number> = {};
  const drop = (reason: string, n = 1): void => {
    dropped[reason] = (dropped[reason] ?? 0) + n;
  };
  const out = options.out ?? `${path}.reindex-tmp`;
  let writer: NdpFileWriter | undefined;
  try {
    const size = (await handle.stat()).size;
    const prefix = Buffer.alloc(Math.min(size, 65536));
    await handle.read(prefix, 0, prefix.length, 0);
    let header: FileHeader | undefined;
    let source: ReindexResult['source'] = 'damaged';
    let start = 0;
    const end = size;
    if (prefix[0] === MAGIC) {
      source = 'legacy';
    } else if (hasFileMagic(prefix) && prefix.length >= HEADER_FIXED_BYTES) {
      try {
        header = decodeHeader(prefix.subarray(0, headerLengthOf(prefix)));
        source = 'ndp';
        start = header.headerLength;
      } catch {
        header = undefined;
      }
    }
    writer = await NdpFileWriter.create(out, {
      name: header?.name ?? basename(path, extname(path)),
      tokenizer: header?.tokenizer ?? { name: 'unknown', hash: '', vocabSize: 0 },
      src: header?.src ?? SRC.TEXT_CORPUS,
      dst: header?.dst ?? DST.EMBEDDING,
    });
    const keep = async (body: Uint8Array, src: number): Promise<void> => {
      let tokens: number;
      try {
        tokens = decodeSampleBody(body).tokens.length;
      } catch {
        drop('bad_body');
        return;
      }
      await writer!.appendBody(body, tokens, src);
    };
    let partial: Partial | undefined;
    const abandonPartial = (): void => {
      if (partial !== undefined) drop('incomplete');
      partial = undefined;
    };
    let buf = Buffer.alloc(0);
    let bufStart = start;
    let readPos = start;
    let p = 0;
    let garbageFrom = -1;
    const endGarbage = (at: number): void => {
      if (garbageFrom >= 0) drop('garbage_bytes', at - garbageFrom);
      garbageFrom = -1;
    };
    for (;;) {
      // Keep at least one whole largest frame ahead of p unless the region ends sooner.
      if (buf.length - p < FRAME_OVERHEAD + 0xffff && readPos < end) {
        const more = Buffer.alloc(Math.min(chunkBytes, end - readPos));
        const { bytesRead } = await handle.read(more, 0, more.length, readPos);
        readPos += bytesRead;
        buf = Buffer.concat([buf.subarray(p), more.subarray(0, bytesRead)]);
        bufStart += p;
        p = 0;
        if (bytesRead === 0) break;
        continue;
      }
      if (p >= buf.length) break;
      if (buf[p] !== MAGIC) {
        // The index follows the last sample; it is rebuilt, not read (it may be what is damaged).
        if (source !== 'legacy' && INDEX_MAGIC.every((b, i) => buf[p + i] === b)) break;
        if (garbageFrom < 0) garbageFrom = bufStart + p;
        const next = buf.indexOf(MAGIC, p + 1);
        p = next < 0 ? buf.length : next;
        continue;
      }
      const read = buf.length - p >= FRAME_HEADER_BYTES ? readFrameAt(buf, p) : undefined;
      // Both kinds of sample frame are taken whatever the file looked like: a damaged first byte must
      // not make an .ndp body look like a legacy file (or the reverse) and lose every sample.
      if (read === undefined || !read.frame.crcOk || (read.frame.typ !== TYP.SEGMENT && read.frame.typ !== TYP.TOKEN_IDS)) {
        // A cut frame at the end, a damaged frame or a 0xAA inside other bytes: step over one byte.
        if (garbageFrom < 0) garbageFrom = bufStart + p;
        if (read !== undefined && read.frame.typ === TYP.SEGMENT && !read.frame.crcOk) drop('bad_crc_frames');
        p++;
        continue;
      }
      endGarbage(bufStart + p);
      const { frame } = read;
      p = read.end;
      if (frame.typ === TYP.TOKEN_IDS) {
        abandonPartial();
        if (frame.len % 4 !== 0) {
          drop('bad_body');
          continue;
        }
        const body = Buffer.alloc(BODY_HEADER_BYTES + frame.len);
        body[0] = BODY_VERSION;
        body.writeUInt32BE(frame.len / 4, 4);
        body.set(frame.payload, BODY_HEADER_BYTES);
        await keep(body, frame.src);
        continue;
      }
      let segment;
      try {
        segment = readTransportHeader(frame.payload);
      } catch {
        abandonPartial();
        drop('bad_segment');
        continue;
      }
      const { header: th, fragment } = segment;
      if (th.fragIndex === 0) {
        abandonPartial();
        partial = { sample: th.sample, src: frame.src, fragCount: th.fragCount, next: 0, bodyCrc: th.bodyCrc, body: Buffer.alloc(th.bodyLength) };
      }
      if (partial === undefined || th.sample !== partial.sample || th.fragIndex !== partial.next || th.fragCount !== partial.fragCount || th.bodyLength !== partial.body.length || th.bodyCrc !== partial.bodyCrc) {
        abandonPartial();
        continue;
      }
      partial.body.set(fragment, th.fragOffset);
      partial.next++;
      if (partial.next === partial.fragCount) {
        const done = partial;
        partial = undefined;
        if (crc32(done.body) !== done.bodyCrc) drop('body_crc');
        else await keep(done.body, done.src);
      }
    }
    endGarbage(bufStart + p);
    abandonPartial();
    const written = await writer.finish();
    writer = undefined;
    await handle.close();
    if (options.out === undefined) await rename(out, path);
    const result: ReindexResult = { out: options.out ?? path, source, kept: written.sampleCount, tokens: written.tokenCount, dropped };
    return header !== undefined && header.indexOffset !== 0 ? { ...result, announced: header.sampleCount } : result;
  } catch (err) {
    await handle.close().catch(() => undefined);
    if (writer !== undefined) {
      await writer.abort();
      await rm(out, { force: true });
    }
    throw err;
  }
}

