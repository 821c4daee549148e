import t from 'tap';
import { copyFile, readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isNdpError } from '../../src/protocol/errors.js';
import { chatPieces } from '../../src/dataset/record.js';
import { tokenizeRecord } from '../../src/dataset/tokenize-record.js';
import { templateRenderer } from '../../src/dataset/record-processor.js';
import { PROBE_CORPUS, embeddedTokenizerDir, loadTokenizer } from '../../src/dataset/tokenizer.js';
import { tempDir } from '../temp-dir.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const dir = tempDir(t, 'ndp-tokenizer-');

/** A mixed corpus: the probe texts plus this repository's own sources and docs (code, Markdown, JSON). */
async function mixedCorpus(): Promise<string[]> {
  const texts = [...PROBE_CORPUS];
  for (const sub of ['src/protocol', 'src/dataset', 'protocol-spec']) {
    for (const name of (await readdir(join(root, sub))).sort()) {
      if (/\.(ts|md|json)$/.test(name)) texts.push(await readFile(join(root, sub, name), 'utf8'));
    }
  }
  return texts;
}

const transformers = await loadTokenizer('qwen3', { engine: 'transformers' });
const native = await loadTokenizer('qwen3', { engine: 'native' });

t.test('native tokenizers and transformers.js give identical ids on a mixed corpus', async (t) => {
  const corpus = await mixedCorpus();
  t.ok(corpus.length > 20);
  const a = await native.encodeBatch(corpus);
  const b = await transformers.encodeBatch(corpus);
  let tokens = 0;
  for (const [i, ids] of a.entries()) {
    tokens += ids.length;
    if (Buffer.compare(Buffer.from(ids.buffer), Buffer.from(b[i]!.buffer)) !== 0) t.fail(`text ${i} differs`);
  }
  t.ok(tokens > 10000, `${tokens} tokens compared`);
  t.same(Array.from(await native.encode('hello world')), [14990, 1879], 'known Qwen ids');
});

t.test('auto picks the native engine when it matches, and reports why', async (t) => {
  const auto = await loadTokenizer();
  t.equal(auto.engine, 'native');
  t.match(auto.engineNote, /same ids/);
  t.equal(auto.identity.vocabSize, 151669);
  t.match(auto.identity.hash, /^[0-9a-f]{64}$/);
  t.equal(auto.eosTokenText, '<|im_end|>');
  t.equal(auto.eosTokenId, 151645);
  t.equal(auto.padTokenId, 151643);
});

t.test('--tokenizer DIR: a Hugging Face folder gives the same identity hash and ids', async (t) => {
  const folder = join(dir, 'my-tokenizer');
  await mkdir(folder);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(embeddedTokenizerDir(), f), join(folder, f));
  const fromDir = await loadTokenizer(folder, { engine: 'transformers' });
  t.equal(fromDir.identity.hash, transformers.identity.hash);
  t.equal(fromDir.identity.name, 'my-tokenizer');
  t.same(await fromDir.encode('def f(x): return x'), await transformers.encode('def f(x): return x'));
  await loadTokenizer(join(dir, 'missing')).then(
    () => t.fail('loaded a missing folder'),
    (err: unknown) => t.ok(isNdpError(err, 'NDP_ERR_TOKENIZER_LOAD'), (err as Error).message),
  );
});

t.test('auto falls back to transformers.js when the native binding cannot parse the folder', async (t) => {
  // An extra top-level key (what a JSON module import adds as `default`) breaks the Rust parser only.
  const folder = join(dir, 'extra-key');
  await mkdir(folder);
  const json = JSON.parse(await readFile(join(embeddedTokenizerDir(), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(folder, 'tokenizer.json'), JSON.stringify({ ...json, default: { unexpected: true } }));
  await copyFile(join(embeddedTokenizerDir(), 'tokenizer_config.json'), join(folder, 'tokenizer_config.json'));
  const auto = await loadTokenizer(folder);
  if (auto.engine === 'native') {
    t.skip('this native binding accepts the extra key: no fallback to observe', () => undefined);
    return;
  }
  t.equal(auto.engine, 'transformers');
  t.match(auto.engineNote, /native tokenizers failed to load/);
  t.same(await auto.encode('hello world'), Int32Array.from([14990, 1879]));
});

t.test('chat pieces tokenized apart give the ids of the whole rendered conversation', async (t) => {
  const renderer = templateRenderer(native);
  const conversations = [
    [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'Hello! How can I help?' }],
    [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Write a loop' },
      { role: 'assistant', content: '  for i in range(3):\n      print(i)' },
      { role: 'user', content: 'Thanks 🙏' },
      { role: 'assistant', content: '\n\nYou are welcome.' },
    ],
    [{ role: 'user', content: 'same text' }, { role: 'assistant', content: 'same text' }],
  ];
  for (const messages of conversations) {
    const pieces = await chatPieces(messages, renderer);
    const whole = await native.encode(await native.applyChatTemplate(messages));
    const apart = (await native.encodeBatch(pieces.map((p) => p.text))).flatMap((ids) => Array.from(ids));
    t.same(apart, Array.from(whole), `ids equal for ${messages.length} messages`);
    const trained = pieces.filter((p) => p.trained).map((p) => p.text);
    const assistants = messages.filter((m) => m.role === 'assistant');
    t.equal(trained.length, assistants.length);
    trained.forEach((text, i) => t.ok(text.trim().startsWith(assistants[i]!.content.trim()) && text.endsWith('<|im_end|>'), `assistant ${i} trained with its end-of-turn token`));
  }
});

t.test('--max-tokens at the limit: N tokens pass untouched, N + 1 overflow by policy', async (t) => {
  const record = { src: 1, pieces: [{ text: 'one two three four five six', trained: true }], appendEos: false };
  const n = (await native.encode(record.pieces[0]!.text)).length;
  const exact = await tokenizeRecord(record, native, { maxTokens: n, overflow: 'drop' });
  t.equal(exact.samples[0]!.tokens.length, n);
  t.equal(exact.overflow, undefined);
  const cut = await tokenizeRecord(record, native, { maxTokens: n - 1, overflow: 'truncate' });
  t.equal(cut.overflow, 'truncated');
  t.equal(cut.samples[0]!.tokens.length, n - 1);
  const split = await tokenizeRecord(record, native, { maxTokens: n - 1, overflow: 'split' });
  t.same(split.samples.map((s) => s.tokens.length), [n - 1, 1]);
  await tokenizeRecord(record, native, { maxTokens: n - 1, overflow: 'drop' }).then(
    () => t.fail('not dropped'),
    (err: unknown) => t.ok(isNdpError(err, 'NDP_ERR_SAMPLE_OVERFLOW')),
  );
  // Truncation that leaves only prompt tokens has nothing to train on: skipped with its reason.
  const prompt = { src: 4, pieces: [{ text: 'a long prompt of several words', trained: false }, { text: ' answer', trained: true }], appendEos: false };
  await tokenizeRecord(prompt, native, { maxTokens: 2, overflow: 'truncate' }).then(
    () => t.fail('kept a sample with nothing to train on'),
    (err: unknown) => t.ok(isNdpError(err, 'NDP_ERR_INPUT_EMPTY')),
  );
});
