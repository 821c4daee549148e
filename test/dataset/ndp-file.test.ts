import t from 'tap';

type Tap = Pick<typeof t, 'ok' | 'fail'>;
import { readFile, stat, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { isNdpError } from '../../src/protocol/errors.js';
import { encodeFrame, readFrameAt, type DecodedFrame } from '../../src/protocol/frame.js';
import { DST, SRC, TYP } from '../../src/protocol/registry.js';
import { decodeSampleBody } from '../../src/protocol/sample-body.js';
import { decodeHeader, indexSize } from '../../src/dataset/ndp-file-format.js';
import { openNdpFile } from '../../src/dataset/ndp-file.js';
import { NdpFileWriter } from '../../src/dataset/ndp-file-writer.js';
import { reindexNdpFile } from '../../src/dataset/reindex.js';
import { tempDir } from '../temp-dir.js';

const TOKENIZER = { name: 'test-tokenizer', hash: 'ab'.repeat(32), vocabSize: 151669 };

/** Deterministic pseudo-random samples: lengths 1..maxTokens, some with a loss mask. */
function makeSamples(count: number, maxTokens: number, seed = 1): Array<{ tokens: Int32Array; lossMask: Uint8Array; src: number }> {
  let state = seed >>> 0;
  const next = (): number => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state;
  };
  const out = [];
  for (let i = 0; i < count; i++) {
    const n = 1 + (next() % maxTokens);
    const tokens = new Int32Array(n);
    for (let j = 0; j < n; j++) tokens[j] = next() % 151669;
    const lossMask = new Uint8Array(n).fill(1);
    if (i % 3 === 0) for (let j = 0; j < n / 2; j++) lossMask[j] = 0;
    out.push({ tokens, lossMask, src: i % 5 === 0 ? SRC.CODE_REPO : SRC.TEXT_CORPUS });
  }
  return out;
}

async function writeSamples(path: string, samples: ReturnType<typeof makeSamples>, options: { maxFrameBytes?: number; bufferBytes?: number } = {}): Promise<void> {
  const writer = await NdpFileWriter.create(path, { name: 'unit', tokenizer: TOKENIZER, src: SRC.TEXT_CORPUS, ...options });
  for (const s of samples) await writer.append(s);
  await writer.finish();
}

async function expectCode(t: Tap, promise: Promise<unknown>, code: string): Promise<void> {
  await promise.then(
    () => t.fail(`expected ${code}, resolved`),
    (err: unknown) => t.ok(isNdpError(err, code as never), `${code}: ${(err as Error).message}`),
  );
}

const dir = tempDir(t, 'ndp-file-');

t.test('round trip: header, random access, streaming, bodies', async (t) => {
  const samples = makeSamples(300, 400);
  const path = join(dir, 'round.ndp');
  await writeSamples(path, samples);
  const file = await openNdpFile(path);
  t.teardown(() => file.close());
  t.equal(file.format, 'ndp');
  t.equal(file.legacy, false);
  t.equal(file.name, 'unit');
  t.equal(file.src, SRC.TEXT_CORPUS);
  t.equal(file.dst, DST.EMBEDDING);
  t.same(file.tokenizer, TOKENIZER);
  t.equal(file.sampleCount, 300);
  t.equal(file.tokenCount, samples.reduce((a, s) => a + s.tokens.length, 0));
  for (const i of [299, 0, 17, 150, 17]) {
    const got = await file.read(i);
    t.equal(got.index, i);
    t.equal(got.src, samples[i]!.src);
    t.same(Array.from(got.tokens), Array.from(samples[i]!.tokens), `tokens of ${i}`);
    t.same(Array.from(got.lossMask), Array.from(samples[i]!.lossMask), `mask of ${i}`);
    t.same(decodeSampleBody(await file.readBody(i)).tokens, got.tokens);
  }
  t.ok(file.stats().cacheHits >= 1, 'repeated read served from the cache');
  let n = 0;
  for await (const s of file.samples()) {
    t.equal(s.index, n);
    if (s.tokens.length !== samples[n]!.tokens.length || s.tokens.some((v, j) => v !== samples[n]!.tokens[j])) t.fail(`stream sample ${n} differs`);
    n++;
  }
  t.equal(n, 300);
  const part = [];
  for await (const s of file.samples({ from: 290, to: 295 })) part.push(s.index);
  t.same(part, [290, 291, 292, 293, 294]);
  await expectCode(t, file.read(300), 'NDP_ERR_SAMPLE_OUT_OF_RANGE');
  await expectCode(t, file.read(-1), 'NDP_ERR_SAMPLE_OUT_OF_RANGE');
});

t.test('the body is the wire: every record is SEGMENT frames a stream parser reads', async (t) => {
  const path = join(dir, 'wire.ndp');
  await writeSamples(path, makeSamples(20, 50));
  const bytes = await readFile(path);
  const header = decodeHeader(bytes);
  const body = bytes.subarray(header.headerLength, header.indexOffset);
  const frames: DecodedFrame[] = [];
  for (let at = 0; at < body.length; ) {
    const read = readFrameAt(body, at);
    if (read === undefined) break;
    frames.push(read.frame);
    at = read.end;
  }
  t.equal(frames.length, 20, 'one frame per sample');
  t.ok(frames.every((f) => f.typ === TYP.SEGMENT && f.crcOk));
});

t.test('samples larger than one frame are cut into several and read back', async (t) => {
  const samples = makeSamples(5, 40000, 7);
  samples.push({ tokens: new Int32Array(50000).map((_, i) => i), lossMask: new Uint8Array(50000).fill(1), src: SRC.CODE_REPO });
  const path = join(dir, 'big-samples.ndp');
  await writeSamples(path, samples, { maxFrameBytes: 1472 });
  const file = await openNdpFile(path);
  t.teardown(() => file.close());
  const last = await file.read(5);
  t.same(last.tokens.slice(49990), Int32Array.from([49990, 49991, 49992, 49993, 49994, 49995, 49996, 49997, 49998, 49999]));
  const entry = await file.entry(5);
  t.ok(entry.length > 200000 && entry.tokens === 50000, 'one record spans many 1472-byte frames');
  let n = 0;
  for await (const s of file.samples()) t.equal(s.tokens.length, samples[n++]!.tokens.length);
});

t.test('determinism: identical input gives a byte-identical file, whatever the buffer size', async (t) => {
  const samples = makeSamples(200, 300, 3);
  const a = join(dir, 'det-a.ndp');
  const b = join(dir, 'det-b.ndp');
  await writeSamples(a, samples);
  await writeSamples(b, samples, { bufferBytes: 4096 });
  t.ok((await readFile(a)).equals(await readFile(b)));
});

t.test('empty file round trip', async (t) => {
  const path = join(dir, 'empty.ndp');
  await writeSamples(path, []);
  const file = await openNdpFile(path);
  t.equal(file.sampleCount, 0);
  let n = 0;
  for await (const _ of file.samples()) n++;
  t.equal(n, 0);
  await file.close();
});

t.test('corrupt sample: read throws and counts, streaming skips or fails by policy', async (t) => {
  const samples = makeSamples(50, 100, 5);
  const path = join(dir, 'corrupt.ndp');
  await writeSamples(path, samples);
  const probe = await openNdpFile(path);
  const entry = await probe.entry(10);
  await probe.close();
  const handle = await open(path, 'r+');
  // Flip one byte in the middle of sample 10's token ids.
  const at = entry.offset + Math.floor(entry.length / 2);
  const one = Buffer.alloc(1);
  await handle.read(one, 0, 1, at);
  one[0] = one[0]! ^ 0x10;
  await handle.write(one, 0, 1, at);
  await handle.close();

  const skip = await openNdpFile(path, { crc: 'skip' });
  await expectCode(t, skip.read(10), 'NDP_ERR_BAD_CRC');
  t.same((await skip.read(11)).tokens, samples[11]!.tokens, 'neighbours intact');
  const seen: number[] = [];
  for await (const s of skip.samples()) seen.push(s.index);
  t.equal(seen.length, 49);
  t.notOk(seen.includes(10));
  t.same(skip.stats().dropped, { bad_crc: 2 }, 'one drop from read(), one from streaming');
  await skip.close();

  const fail = await openNdpFile(path, { crc: 'fail' });
  const stream = async (): Promise<void> => {
    for await (const _ of fail.samples()) void _;
  };
  await expectCode(t, stream(), 'NDP_ERR_BAD_CRC');
  await fail.close();
});

t.test('truncated, incomplete, bad header, index mismatch: clear codes, and reindex repairs', async (t) => {
  const samples = makeSamples(40, 200, 9);
  const good = join(dir, 'good.ndp');
  await writeSamples(good, samples);
  const original = await readFile(good);
  const header = decodeHeader(original);

  const cut = join(dir, 'cut.ndp');
  await writeFile(cut, original.subarray(0, header.indexOffset + 100));
  await expectCode(t, openNdpFile(cut), 'NDP_ERR_FILE_TRUNCATED');
  await writeFile(cut, original.subarray(0, 50));
  await expectCode(t, openNdpFile(cut), 'NDP_ERR_FILE_TRUNCATED');

  const badMagic = Buffer.from(original);
  badMagic[1] = 0x4f;
  await writeFile(join(dir, 'magic.ndp'), badMagic);
  await expectCode(t, openNdpFile(join(dir, 'magic.ndp')), 'NDP_ERR_FILE_BAD_HEADER');

  const badHeaderCrc = Buffer.from(original);
  badHeaderCrc[20] = badHeaderCrc[20]! ^ 1;
  await writeFile(join(dir, 'hdr.ndp'), badHeaderCrc);
  await expectCode(t, openNdpFile(join(dir, 'hdr.ndp')), 'NDP_ERR_FILE_BAD_HEADER');

  const badIndex = Buffer.from(original);
  badIndex[header.indexOffset + 16 + 16 * 3 + 11] = badIndex[header.indexOffset + 16 + 16 * 3 + 11]! ^ 4;
  await writeFile(join(dir, 'index.ndp'), badIndex);
  await expectCode(t, openNdpFile(join(dir, 'index.ndp')), 'NDP_ERR_INDEX_MISMATCH');

  // Writer died: the samples are there, the header has no index.
  const partialPath = join(dir, 'partial.ndp');
  const writer = await NdpFileWriter.create(partialPath, { name: 'unit', tokenizer: TOKENIZER });
  for (const s of samples.slice(0, 25)) await writer.append(s);
  await writer.abort();
  await expectCode(t, openNdpFile(partialPath), 'NDP_ERR_FILE_INCOMPLETE');
  const repaired = await reindexNdpFile(partialPath);
  t.equal(repaired.kept, 25);
  t.same(repaired.dropped, {});
  const reopened = await openNdpFile(partialPath);
  t.equal(reopened.sampleCount, 25);
  t.same((await reopened.read(24)).lossMask, samples[24]!.lossMask);
  t.same(reopened.tokenizer, TOKENIZER, 'tokenizer identity survives the repair');
  await reopened.close();

  // Truncated inside sample 30's frame: 30 intact samples are kept, the cut one is counted.
  const entry30 = (await (async () => {
    const f = await openNdpFile(good);
    const e = await f.entry(30);
    await f.close();
    return e;
  })());
  await writeFile(cut, original.subarray(0, entry30.offset + 20));
  const fromCut = await reindexNdpFile(cut, { out: join(dir, 'cut-repaired.ndp') });
  t.equal(fromCut.kept, 30);
  t.equal(fromCut.dropped.garbage_bytes, 20, 'the 20 bytes of the cut frame');

  // Index damaged: reindex from the body gives back the original file byte for byte.
  const fromIndex = await reindexNdpFile(join(dir, 'index.ndp'), { out: join(dir, 'index-repaired.ndp') });
  t.equal(fromIndex.kept, 40);
  t.ok((await readFile(join(dir, 'index-repaired.ndp'))).equals(original), 'byte-identical to the original');
});

t.test('reindex keeps every intact sample around a corrupt one and garbage', async (t) => {
  const samples = makeSamples(30, 100, 11);
  const path = join(dir, 'damaged.ndp');
  await writeSamples(path, samples);
  const file = await openNdpFile(path);
  const e5 = await file.entry(5);
  const e6 = await file.entry(6);
  await file.close();
  const bytes = Buffer.from(await readFile(path));
  bytes[e5.offset + 60] = bytes[e5.offset + 60]! ^ 0xff;
  // Garbage inserted between sample 6 and 7 (an index cannot describe this body any more).
  const damaged = Buffer.concat([bytes.subarray(0, e6.offset + e6.length), Buffer.from('not a frame \xaa\xaa at all', 'latin1'), bytes.subarray(e6.offset + e6.length)]);
  await writeFile(path, damaged);
  const result = await reindexNdpFile(path);
  t.equal(result.kept, 29);
  t.equal(result.announced, 30);
  t.ok((result.dropped.bad_crc_frames ?? 0) >= 1);
  const fixed = await openNdpFile(path);
  t.same((await fixed.read(5)).tokens, samples[6]!.tokens, 'renumbered: sample 6 is now 5');
  t.same((await fixed.read(28)).tokens, samples[29]!.tokens);
  await fixed.close();
});

t.test('legacy .qubgpu: a plain concatenation of TOKEN_IDS frames, indexed by scanning', async (t) => {
  const samples = makeSamples(100, 300, 13);
  const frames = samples.map((s) => {
    const payload = Buffer.alloc(4 * s.tokens.length);
    s.tokens.forEach((v, i) => payload.writeInt32BE(v, 4 * i));
    return encodeFrame({ src: s.src, dst: DST.EMBEDDING, typ: TYP.TOKEN_IDS, payload });
  });
  const path = join(dir, 'seed.qubgpu');
  await writeFile(path, Buffer.concat(frames));
  const file = await openNdpFile(path, { readChunkBytes: 65536 });
  t.equal(file.legacy, true);
  t.equal(file.format, 'legacy');
  t.equal(file.sampleCount, 100);
  t.equal(file.tokenizer.name, 'unknown');
  t.equal(file.name, 'seed');
  const s42 = await file.read(42);
  t.same(s42.tokens, samples[42]!.tokens);
  t.ok(s42.lossMask.every((m) => m === 1), 'every token trained on');
  let n = 0;
  for await (const s of file.samples()) if (s.tokens.length === samples[n++]!.tokens.length) continue;
  t.equal(n, 100);
  await file.close();

  await writeFile(path, Buffer.concat(frames).subarray(0, -3));
  await expectCode(t, openNdpFile(path), 'NDP_ERR_FILE_TRUNCATED');
  const converted = await reindexNdpFile(path, { out: join(dir, 'seed.ndp') });
  t.equal(converted.source, 'legacy');
  t.equal(converted.kept, 99);
  const asNdp = await openNdpFile(join(dir, 'seed.ndp'));
  t.equal(asNdp.legacy, false);
  t.same((await asNdp.read(98)).tokens, samples[98]!.tokens);
  await asNdp.close();
});

t.test('large file: random access and streaming stay within the configured memory bounds', async (t) => {
  // ~48 MiB on disk, read through a 1 MiB sample cache, 256 KiB chunks and 128 KiB of index blocks.
  const path = join(dir, 'large.ndp');
  const writer = await NdpFileWriter.create(path, { name: 'large', tokenizer: TOKENIZER });
  const tokens = new Int32Array(1500);
  const count = 8000;
  for (let i = 0; i < count; i++) {
    tokens.fill(i);
    await writer.append({ tokens });
  }
  await writer.finish();
  const size = (await stat(path)).size;
  t.ok(size > 40 * 1024 * 1024);
  const file = await openNdpFile(path, { cacheBytes: 1024 * 1024, readChunkBytes: 256 * 1024, indexCacheBytes: 128 * 1024 });
  t.teardown(() => file.close());
  const afterOpen = file.stats().bytesRead;
  t.ok(afterOpen < indexSize(count) + 4096, `open reads header and index only (${afterOpen} bytes)`);
  let state = 99;
  for (let k = 0; k < 2000; k++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const i = state % count;
    const s = await file.read(i);
    if (s.tokens[0] !== i || s.tokens[1499] !== i) t.fail(`sample ${i} wrong`);
    const st = file.stats();
    if (st.cachedBytes > st.cacheLimitBytes || st.indexCachedBytes > 128 * 1024) t.fail('a cache exceeded its bound');
  }
  const random = file.stats();
  t.ok(random.largestReadBytes <= 256 * 1024, `no read larger than a chunk (${random.largestReadBytes})`);
  t.ok(random.bytesRead - afterOpen < 2000 * 6100, 'random reads fetch one record each');
  let n = 0;
  for await (const s of file.samples()) {
    if (s.tokens[0] !== n) t.fail(`stream order at ${n}`);
    n++;
  }
  t.equal(n, count);
  const streamed = file.stats();
  t.ok(streamed.largestReadBytes <= 256 * 1024, 'streaming reads chunk by chunk');
  t.ok(streamed.bytesRead - random.bytesRead >= size - indexSize(count) - 100, 'streaming read the body once');
});

t.test('reader limits: readChunkBytes at its minimum, bad policies and sizes refused', async (t) => {
  const path = join(dir, 'limits.ndp');
  await writeSamples(path, makeSamples(10, 20, 17));
  const atMin = await openNdpFile(path, { readChunkBytes: 65536 });
  t.equal(atMin.sampleCount, 10);
  await atMin.close();
  await openNdpFile(path, { readChunkBytes: 65535 }).then(
    () => t.fail('accepted a chunk below 64 KiB'),
    (err: unknown) => t.type(err, RangeError),
  );
  await openNdpFile(path, { cacheBytes: -1 }).then(
    () => t.fail('accepted a negative cache'),
    (err: unknown) => t.type(err, RangeError),
  );
  await openNdpFile(path, { crc: 'ignore' as never }).then(
    () => t.fail('accepted an unknown CRC policy'),
    (err: unknown) => t.type(err, RangeError),
  );
  const noCache = await openNdpFile(path, { cacheBytes: 0 });
  await noCache.read(3);
  await noCache.read(3);
  t.equal(noCache.stats().cacheHits, 0, 'cacheBytes 0 caches nothing');
  t.equal(noCache.stats().cachedBytes, 0);
  await noCache.close();
  await NdpFileWriter.create(join(dir, 'bad-frame.ndp'), { name: 'x', tokenizer: TOKENIZER, maxFrameBytes: 48 }).then(
    () => t.fail('accepted frames too small for one body byte'),
    (err: unknown) => t.type(err, RangeError),
  );
  await NdpFileWriter.create(join(dir, 'long-name.ndp'), { name: 'n'.repeat(1025), tokenizer: TOKENIZER }).then(
    () => t.fail('accepted a 1025-byte name'),
    (err: unknown) => t.type(err, RangeError),
  );
  const longest = await NdpFileWriter.create(join(dir, 'long-name.ndp'), { name: 'n'.repeat(1024), tokenizer: TOKENIZER });
  await longest.finish();
  const reopened = await openNdpFile(join(dir, 'long-name.ndp'));
  t.equal(reopened.name.length, 1024, 'a 1024-byte name is at the limit');
  await reopened.close();
});
