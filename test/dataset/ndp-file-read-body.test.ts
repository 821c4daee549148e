import t from 'tap';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { isNdpError } from '../../src/protocol/errors.js';
import { encodeFrame, readFrameAt } from '../../src/protocol/frame.js';
import { decodeSampleBody } from '../../src/protocol/sample-body.js';
import { readTransportHeader, writeTransportHeader, TRANSPORT_HEADER_BYTES } from '../../src/protocol/transport-header.js';
import { openNdpFile, type OpenNdpFileOptions } from '../../src/dataset/ndp-file.js';
import { NdpFileWriter } from '../../src/dataset/ndp-file-writer.js';
import { tempDir } from '../temp-dir.js';

const TOKENIZER = { name: 'test-tokenizer', hash: 'ab'.repeat(32), vocabSize: 151669 };
const dir = tempDir(t, 'ndp-read-body-');

/** `count` samples of `tokens` tokens each, every `maskEvery`-th with a loss mask (1: all records the same size). */
async function writeFixed(path: string, count: number, tokens: number, maskEvery = 3): Promise<Int32Array[]> {
  const writer = await NdpFileWriter.create(path, { name: 'body', tokenizer: TOKENIZER });
  const all: Int32Array[] = [];
  for (let i = 0; i < count; i++) {
    const ids = Int32Array.from({ length: tokens }, (_, k) => (i * 7919 + k * 31) % 151669);
    const lossMask = new Uint8Array(tokens).fill(1);
    if (i % maskEvery === 0) lossMask[0] = 0;
    await writer.append({ tokens: ids, lossMask });
    all.push(ids);
  }
  await writer.finish();
  return all;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (err) {
    return isNdpError(err) ? err.code : String(err);
  }
}

t.test('readBody is the stored body, checked, in random and sequential order, with and without cache and read-ahead', async (t) => {
  const path = join(dir, 'plain.ndp');
  const tokens = await writeFixed(path, 120, 33);
  const reference = await openNdpFile(path, { cacheBytes: 0, readAheadBytes: 0 });
  const stored = [];
  for (let i = 0; i < 120; i++) stored.push(await reference.readStored(i));
  await reference.close();
  const orders = { sequential: Array.from({ length: 120 }, (_, i) => i), strided: Array.from({ length: 120 }, (_, i) => (i * 37) % 120) };
  const configs: OpenNdpFileOptions[] = [{ cacheBytes: 0 }, { cacheBytes: 0, readAheadBytes: 0 }, {}, { readAheadBytes: 64 * 1024 * 1024 }];
  for (const options of configs) {
    for (const [name, order] of Object.entries(orders)) {
      const file = await openNdpFile(path, options);
      // Many reads in flight at once, as the server's read-ahead issues them.
      const bodies = await Promise.all(order.map((i) => file.readBody(i)));
      let same = 0;
      for (const [k, i] of order.entries()) if (Buffer.compare(Buffer.from(bodies[k]!), Buffer.from(stored[i]!.body)) === 0 && decodeSampleBody(bodies[k]!).tokens.every((v, j) => v === tokens[i]![j])) same++;
      t.equal(same, 120, `${name} ${JSON.stringify(options)}`);
      // readStored after readBody decodes the cached body: same tokens and mask.
      const again = await file.readStored(order[5]!);
      t.same(again.lossMask, stored[order[5]!]!.lossMask);
      await file.close();
    }
  }
});

t.test('readAheadBytes: sequential misses read whole windows, exactly at the limit; random access reads one record', async (t) => {
  const path = join(dir, 'window.ndp');
  await writeFixed(path, 100, 20, 1);
  const probe = await openNdpFile(path);
  const record = (await probe.entry(0)).length;
  for (let i = 1; i < 100; i++) if ((await probe.entry(i)).length !== record) t.fail(`record ${i} differs in size`);
  await probe.close();
  /** Reads of samples alone: the index block is read (and cached) before counting. */
  const readsFor = async (readAheadBytes: number, order: number[]): Promise<{ reads: number; bytes: number }> => {
    const file = await openNdpFile(path, { cacheBytes: 0, readAheadBytes });
    await file.entry(0);
    const before = file.stats();
    for (const i of order) await file.readBody(i);
    const after = file.stats();
    await file.close();
    return { reads: after.reads - before.reads, bytes: after.bytesRead - before.bytesRead };
  };
  const sequential = Array.from({ length: 100 }, (_, i) => i);
  t.same(await readsFor(4 * record, sequential), { reads: 25, bytes: 100 * record }, 'a window of exactly 4 records serves 4 samples per read');
  t.equal((await readsFor(4 * record - 1, sequential)).reads, 34, 'one byte less: 3 samples per read');
  t.equal((await readsFor(0, sequential)).reads, 100, '0 disables read-ahead');
  t.equal((await readsFor(record, sequential)).reads, 100, 'a window of one record is no read-ahead');
  const strided = Array.from({ length: 50 }, (_, i) => [50 + i, i]).flat();
  t.ok(strided.every((v, i) => i === 0 || v !== strided[i - 1]! + 1), 'no two consecutive samples in a row');
  const random = await readsFor(4 * record, strided);
  t.same(random, { reads: 100, bytes: 100 * record }, 'random access reads one record at a time');
  await t.rejects(openNdpFile(path, { readAheadBytes: -1 }), RangeError);
  await t.rejects(openNdpFile(path, { readAheadBytes: 1.5 }), RangeError);
});

/** Rewrites the one frame of sample `index` with a changed body, its frame CRC-16 recomputed (and its body CRC-32 when `fixBodyCrc`). */
async function rewriteBody(path: string, index: number, change: (body: Uint8Array) => void, fixBodyCrc: boolean): Promise<void> {
  const probe = await openNdpFile(path);
  const entry = await probe.entry(index);
  await probe.close();
  const handle = await open(path, 'r+');
  const bytes = Buffer.alloc(entry.length);
  await handle.read(bytes, 0, entry.length, entry.offset);
  const { frame } = readFrameAt(bytes, 0)!;
  const { header, fragment } = readTransportHeader(frame.payload);
  const body = Uint8Array.from(fragment);
  change(body);
  const payload = new Uint8Array(TRANSPORT_HEADER_BYTES + body.length);
  writeTransportHeader(payload, 0, { ...header, bodyCrc: fixBodyCrc ? crc32(body) : header.bodyCrc });
  payload.set(body, TRANSPORT_HEADER_BYTES);
  const rewritten = encodeFrame({ src: frame.src, dst: frame.dst, typ: frame.typ, payload });
  if (rewritten.length !== entry.length) throw new Error('rewrite changed the record size');
  await handle.write(rewritten, 0, rewritten.length, entry.offset);
  await handle.close();
}

t.test('readBody keeps every integrity check: frame CRC-16, body CRC-32, body version and layout', async (t) => {
  const path = join(dir, 'corrupt.ndp');
  await writeFixed(path, 40, 24);
  // Sample 3: a raw byte flip (its frame CRC-16 fails).
  const probe = await openNdpFile(path);
  const at = (await probe.entry(3)).offset + 60;
  await probe.close();
  const handle = await open(path, 'r+');
  const one = Buffer.alloc(1);
  await handle.read(one, 0, 1, at);
  one[0] = one[0]! ^ 0x04;
  await handle.write(one, 0, 1, at);
  await handle.close();
  // Sample 7: a token changed, frame CRC-16 valid, body CRC-32 stale.
  await rewriteBody(path, 7, (body) => void (body[20] = body[20]! ^ 1), false);
  // Sample 11: body version 2 with valid checksums; sample 15: a token count its length cannot hold.
  await rewriteBody(path, 11, (body) => void (body[0] = 2), true);
  await rewriteBody(path, 15, (body) => void (body[7] = body[7]! ^ 1), true);
  const expected: Record<number, string> = { 3: 'NDP_ERR_BAD_CRC', 7: 'NDP_ERR_BODY_CRC', 11: 'NDP_ERR_UNSUPPORTED_VERSION', 15: 'NDP_ERR_BAD_BODY' };

  for (const options of [{ cacheBytes: 0, readAheadBytes: 0 }, {}] as OpenNdpFileOptions[]) {
    const file = await openNdpFile(path, options);
    const codes: Record<number, string> = {};
    // Sequential: corrupt samples inside a read-ahead window are caught all the same.
    for (let i = 0; i < 40; i++) {
      const code = await codeOf(file.readBody(i));
      if (code !== 'resolved') codes[i] = code;
    }
    t.same(codes, expected, `readBody ${JSON.stringify(options)}`);
    for (const [i, code] of Object.entries(expected)) t.equal(await codeOf(file.readStored(Number(i))), code, `readStored(${i}) agrees`);
    t.same(file.stats().dropped, { bad_crc: 2, body_crc: 2, unsupported_version: 2, bad_body: 2 }, 'each failed read counted by reason');
    await file.close();
  }
  const streamed: number[] = [];
  const file = await openNdpFile(path, { crc: 'skip' });
  for await (const s of file.samples()) streamed.push(s.index);
  t.same(streamed.filter((i) => i in expected), [], 'streaming skips the same samples');
  t.equal(streamed.length, 36);
  await file.close();
});
