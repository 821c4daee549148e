/**
 * One input record to its samples or its reason for being skipped: the work `ndp convert` spreads
 * over worker threads (convert-worker.ts) or does in-process (`--workers 0`).
 */
import { isNdpError } from '../protocol/errors.js';
import type { InputRecord } from './input-reader.js';
import { parseJsonRecord, sourceFileRecord, type TemplateRenderer } from './record.js';
import { tokenizeRecord, type TokenizeOptions, type TokenizedSample } from './tokenize-record.js';
import type { TextTokenizer } from './tokenizer.js';

export type RecordResult =
  | { readonly ok: true; readonly samples: TokenizedSample[]; readonly overflow?: 'truncated' | 'split' }
  | { readonly ok: false; readonly code: string; readonly message: string };

export function templateRenderer(tokenizer: TextTokenizer): TemplateRenderer {
  return { applyChatTemplate: (m) => tokenizer.applyChatTemplate(m), eosText: tokenizer.eosTokenText };
}

export async function processRecord(record: Pick<InputRecord, 'kind' | 'text' | 'skip'>, tokenizer: TextTokenizer, renderer: TemplateRenderer, options: TokenizeOptions): Promise<RecordResult> {
  if (record.skip !== undefined) return { ok: false, code: record.skip.code, message: record.skip.message };
  try {
    const parsed = record.kind === 'json' ? await parseJsonRecord(record.text, renderer) : sourceFileRecord(record.text);
    const { samples, overflow } = await tokenizeRecord(parsed, tokenizer, options);
    return overflow === undefined ? { ok: true, samples } : { ok: true, samples, overflow };
  } catch (err) {
    if (isNdpError(err)) return { ok: false, code: err.code, message: err.message };
    throw err;
  }
}
