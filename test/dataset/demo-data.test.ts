import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildDemoData } from '../../src/dataset/demo-data.js';
import { openNdpFile } from '../../src/dataset/ndp-file.js';
import { DST, SRC } from '../../src/protocol/registry.js';
import { loadTokenizer } from '../../src/dataset/tokenizer.js';
import { tempDir } from '../temp-dir.js';

const dir = tempDir(t, 'ndp-demo-');
const options = { trainSamples: 300, evalSamples: 40, codeFiles: 6, codeBytes: 64 * 1024 };

t.test('train and held-out eval splits, code from the dependencies, deterministic, reused', async (t) => {
  const a = await buildDemoData(join(dir, 'a'), options);
  t.equal(a.reused, false);
  t.ok(a.codeFiles > 0 && a.codeFiles <= 6, `${a.codeFiles} source files`);
  t.equal(a.evalSamples, 40);
  t.ok(a.trainSamples >= 300 + a.codeFiles);

  const train = await openNdpFile(a.train);
  const evalFile = await openNdpFile(a.eval);
  t.teardown(async () => {
    await train.close();
    await evalFile.close();
  });
  t.equal(evalFile.dst, DST.EVAL, 'eval split is addressed to EVAL');
  t.equal(train.tokenizer.vocabSize, 151669);
  const tokenizer = await loadTokenizer('qwen3', { engine: 'native' });
  const cycles = async (file: typeof train, count: number): Promise<Set<string>> => {
    const out = new Set<string>();
    for (let i = 0; i < count; i++) {
      const s = await file.read(i);
      if (s.src !== SRC.SYNTHETIC) continue;
      const text = await tokenizer.decode(s.tokens.subarray(0, s.lossMask.indexOf(1)));
      const words = text.replace(/^pattern: /, '').split(' ');
      out.add(words.slice(0, words.length / 2).join(' '));
      if (s.lossMask.indexOf(1) < 4) t.fail(`sample ${i}: the prompt is not masked`);
    }
    return out;
  };
  const trainCycles = await cycles(train, 300);
  const evalCycles = await cycles(evalFile, evalFile.sampleCount);
  t.equal(evalCycles.size, 40);
  t.same([...evalCycles].filter((c) => trainCycles.has(c)), [], 'no eval cycle occurs in train');
  const code = await train.read(300);
  t.equal(code.src, SRC.CODE_REPO);
  t.ok(code.tokens.length <= 256, 'code split at maxTokens');

  const b = await buildDemoData(join(dir, 'b'), options);
  t.ok((await readFile(a.train)).equals(await readFile(b.train)), 'train byte-identical');
  t.ok((await readFile(a.eval)).equals(await readFile(b.eval)), 'eval byte-identical');

  const again = await buildDemoData(join(dir, 'a'), options);
  t.equal(again.reused, true);
  t.equal(again.trainTokens, a.trainTokens);
  const changed = await buildDemoData(join(dir, 'a'), { ...options, codeFiles: 0 });
  t.equal(changed.reused, false, 'other options rebuild');
  t.equal(changed.codeFiles, 0);
  t.equal(changed.trainSamples, 300);
});
