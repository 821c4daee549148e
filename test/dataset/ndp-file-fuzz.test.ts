/**
 * Damaged files, time-boxed with fast-check: whatever is flipped, cut or inserted, opening and
 * reading raise only NdpErrors (no other exception escapes), every sample is read or counted as
 * dropped, and reindexing always produces a file that opens and reads cleanly without losing a
 * sample the damage did not touch.
 */
import t from 'tap';
import fc from 'fast-check';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NdpError } from '../../src/protocol/errors.js';
import { SRC } from '../../src/protocol/registry.js';
import { ByteLru } from '../../src/dataset/byte-lru.js';
import { openNdpFile } from '../../src/dataset/ndp-file.js';
import { NdpFileWriter } from '../../src/dataset/ndp-file-writer.js';
import { reindexNdpFile } from '../../src/dataset/reindex.js';
import { tempDir } from '../temp-dir.js';

const TIME_BOX_MS = 15_000;
const dir = tempDir(t, 'ndp-fuzz-');

const SAMPLES = 24;
const original = join(dir, 'original.ndp');
const writer = await NdpFileWriter.create(original, { name: 'fuzz', tokenizer: { name: 't', hash: '', vocabSize: 1000 }, maxFrameBytes: 512 });
for (let i = 0; i < SAMPLES; i++) {
  // Some samples span several 512-byte frames, so damage can hit a middle fragment.
  const tokens = Int32Array.from({ length: 5 + ((i * 37) % 300) }, (_, j) => (i * 1000 + j) % 1000);
  const lossMask = Uint8Array.from(tokens, (_, j) => (j % 4 === 0 ? 0 : 1));
  await writer.append({ tokens, lossMask, src: i % 2 ? SRC.CODE_REPO : SRC.TEXT_CORPUS });
}
await writer.finish();
const bytes = await readFile(original);

type Damage = { kind: 'flip'; at: number; mask: number } | { kind: 'cut'; at: number } | { kind: 'insert'; at: number; junk: Uint8Array };

function damage(input: Buffer, list: readonly Damage[]): Buffer {
  let out = Buffer.from(input);
  for (const d of list) {
    const at = d.at % Math.max(1, out.length);
    if (d.kind === 'flip') out[at] = out[at]! ^ d.mask;
    else if (d.kind === 'cut') out = out.subarray(0, at);
    else out = Buffer.concat([out.subarray(0, at), d.junk, out.subarray(at)]);
  }
  return out;
}

const damageArb = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), junk: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
);

t.test('damaged files: only NdpErrors escape, every sample accounted, reindex always recovers', async (t) => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(damageArb, { minLength: 1, maxLength: 3 }), async (list) => {
      const path = join(dir, `case-${run++}.ndp`);
      await writeFile(path, damage(bytes, list));
      try {
        const file = await openNdpFile(path, { crc: 'skip' });
        try {
          let streamed = 0;
          for await (const _ of file.samples()) streamed++;
          const dropped = Object.values(file.stats().dropped).reduce((a, b) => a + b, 0);
          if (streamed + dropped !== file.sampleCount) throw new Error(`streamed ${streamed} + dropped ${dropped} ≠ ${file.sampleCount}`);
          for (let i = 0; i < file.sampleCount; i++) await file.read(i).catch((err: unknown) => {
            if (!(err instanceof NdpError)) throw err;
          });
        } finally {
          await file.close();
        }
      } catch (err) {
        if (!(err instanceof NdpError)) throw err;
      }
      const fixed = join(dir, `case-${run}-fixed.ndp`);
      const result = await reindexNdpFile(path, { out: fixed });
      if (result.kept > SAMPLES + 1) throw new Error(`kept ${result.kept} of ${SAMPLES}`);
      const reopened = await openNdpFile(fixed, { crc: 'fail' });
      for await (const _ of reopened.samples()) void _;
      await reopened.close();
      // A single flip hits at most one sample (or only the header/index): the others all survive.
      if (list.length === 1 && list[0]!.kind === 'flip' && result.kept < SAMPLES - 1) throw new Error(`one flipped byte lost ${SAMPLES - result.kept} samples`);
      await rm(path);
      await rm(fixed);
    }),
    { numRuns: 400, interruptAfterTimeLimit: TIME_BOX_MS },
  );
  t.ok(run > 10, `${run} damaged files checked`);
});

t.test('ByteLru: bounded by bytes, least recently used leaves first, oversize values not stored', async (t) => {
  const lru = new ByteLru<number, string>(100);
  lru.set(1, 'a', 40);
  lru.set(2, 'b', 40);
  t.equal(lru.get(1), 'a');
  lru.set(3, 'c', 40);
  t.equal(lru.get(2), undefined, 'the least recently used entry was evicted');
  t.equal(lru.get(1), 'a');
  t.equal(lru.bytes, 80);
  lru.set(4, 'd', 100);
  t.equal(lru.bytes, 100, 'exactly at the limit is kept');
  t.equal(lru.size, 1);
  lru.set(5, 'e', 101);
  t.equal(lru.get(5), undefined, 'larger than the limit is not stored');
  t.equal(lru.get(4), 'd');
  const off = new ByteLru<number, string>(0);
  off.set(1, 'x', 1);
  t.equal(off.size, 0, 'limit 0 disables caching');
  t.throws(() => new ByteLru(-1), RangeError);
});

t.test('reindex regression: a first byte damaged into 0xAA does not make the body look legacy', async (t) => {
  const path = join(dir, 'first-byte.ndp');
  const copy = Buffer.from(bytes);
  copy[0] = 0xaa;
  await writeFile(path, copy);
  const result = await reindexNdpFile(path, { out: join(dir, 'first-byte-fixed.ndp') });
  t.equal(result.kept, SAMPLES);
});
