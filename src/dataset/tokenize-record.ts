/**
 * A parsed record (record.ts) to the samples an .ndp file stores: its pieces tokenized and
 * concatenated, the loss mask set per piece, and `--max-tokens` applied by the overflow policy.
 */
import { NdpError } from '../protocol/errors.js';
import type { ParsedRecord } from './record.js';
import type { TextTokenizer } from './tokenizer.js';

/** What happens to a sample longer than `maxTokens`: cut to its first N tokens, cut into N-token samples, or dropped and counted. */
export type OverflowPolicy = 'truncate' | 'split' | 'drop';

export interface TokenizedSample {
  readonly src: number;
  readonly tokens: Int32Array;
  readonly lossMask: Uint8Array;
}

export interface TokenizeOptions {
  /** Longest sample in tokens; 0 = no limit. Defaults to 0. */
  readonly maxTokens?: number;
  /** Defaults to 'truncate'. */
  readonly overflow?: OverflowPolicy;
  /** SRC of every sample instead of the format's. */
  readonly src?: number;
}

export interface TokenizedRecord {
  readonly samples: TokenizedSample[];
  /** Set when the record was longer than maxTokens and was truncated or split. */
  readonly overflow?: 'truncated' | 'split';
}

/**
 * Tokenizes `record`. Errors: NDP_ERR_INPUT_EMPTY (no tokens, or none trained on),
 * NDP_ERR_SAMPLE_OVERFLOW (longer than maxTokens under 'drop').
 */
export async function tokenizeRecord(record: ParsedRecord, tokenizer: TextTokenizer, options: TokenizeOptions = {}): Promise<TokenizedRecord> {
  const texts = recordTexts(record);
  return assembleRecord(record, await tokenizer.encodeBatch(texts), tokenizer.eosTokenId, options);
}

/** The texts of a record's pieces that `assembleRecord` expects ids for, in order (empty pieces left out). */
export function recordTexts(record: ParsedRecord): string[] {
  return record.pieces.filter((p) => p.text !== '').map((p) => p.text);
}

/**
 * Builds a record's samples from the ids of `recordTexts(record)`: lets a caller encode the pieces
 * of many records in one `encodeBatch` call. Errors as tokenizeRecord.
 */
export function assembleRecord(record: ParsedRecord, ids: readonly Int32Array[], eosTokenId: number | undefined, options: TokenizeOptions = {}): TokenizedRecord {
  const pieces = record.pieces.filter((p) => p.text !== '');
  if (ids.length !== pieces.length) throw new RangeError(`${ids.length} id arrays for ${pieces.length} pieces`);
  const eos = record.appendEos && eosTokenId !== undefined ? 1 : 0;
  let total = eos;
  for (const piece of ids) total += piece.length;
  const tokens = new Int32Array(total);
  const lossMask = new Uint8Array(total);
  let at = 0;
  for (const [i, piece] of ids.entries()) {
    tokens.set(piece, at);
    if (pieces[i]!.trained) lossMask.fill(1, at, at + piece.length);
    at += piece.length;
  }
  if (eos) {
    tokens[at] = eosTokenId!;
    lossMask[at] = 1;
  }
  const src = options.src ?? record.src;
  const max = options.maxTokens ?? 0;
  const trained = (mask: Uint8Array): boolean => mask.includes(1);
  if (total === 0) throw new NdpError('NDP_ERR_INPUT_EMPTY', 'record tokenizes to no tokens');
  if (max === 0 || total <= max) {
    if (!trained(lossMask)) throw new NdpError('NDP_ERR_INPUT_EMPTY', 'no token is trained on');
    return { samples: [{ src, tokens, lossMask }] };
  }
  const policy = options.overflow ?? 'truncate';
  if (policy === 'drop') throw new NdpError('NDP_ERR_SAMPLE_OVERFLOW', `${total} tokens, more than --max-tokens ${max}`);
  if (policy === 'truncate') {
    const cut = lossMask.subarray(0, max);
    if (!trained(cut)) throw new NdpError('NDP_ERR_INPUT_EMPTY', `no token is trained on within the first ${max} (--overflow truncate)`);
    return { samples: [{ src, tokens: tokens.slice(0, max), lossMask: lossMask.slice(0, max) }], overflow: 'truncated' };
  }
  const samples: TokenizedSample[] = [];
  // A chunk with nothing to train on teaches nothing: left out (split keeps every trained token).
  for (let from = 0; from < total; from += max) {
    const mask = lossMask.slice(from, from + max);
    if (trained(mask)) samples.push({ src, tokens: tokens.slice(from, from + max), lossMask: mask });
  }
  if (samples.length === 0) throw new NdpError('NDP_ERR_INPUT_EMPTY', 'no token is trained on');
  return { samples, overflow: 'split' };
}
