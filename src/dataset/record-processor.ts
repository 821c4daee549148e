/**
 * One input record to its samples or its reason for being skipped: the work `ndp convert` spreads
 * over worker threads (convert-worker.ts) or does in-process (`--workers 0`).
 */
import { isNdpError } from '../protocol/errors.js';
import type { InputRecord } from './input-reader.js';
import { parseJsonRecord, sourceFileRecord, type ParsedRecord, type TemplateRenderer } from './record.js';
import { assembleRecord, recordTexts, type TokenizeOptions, type TokenizedSample } from './tokenize-record.js';
import type { TextTokenizer } from './tokenizer.js';

export type RecordResult =
  | { readonly ok: true; readonly samples: TokenizedSample[]; readonly overflow?: 'truncated' | 'split' }
  | { readonly ok: false; readonly code: string; readonly message: string };

export function templateRenderer(tokenizer: TextTokenizer): TemplateRenderer {
  return { applyChatTemplate: (m) => tokenizer.applyChatTemplate(m), eosText: tokenizer.eosTokenText };
}

/**
 * Processes records together: every piece of every record is encoded in one `encodeBatch` call (the
 * native engine spreads a batch over its own threads and pays one call overhead), results in order.
 */
export async function processRecords(records: readonly Pick<InputRecord, 'kind' | 'text' | 'skip'>[], tokenizer: TextTokenizer, renderer: TemplateRenderer, options: TokenizeOptions): Promise<RecordResult[]> {
  const parsed: Array<ParsedRecord | RecordResult> = [];
  const texts: string[] = [];
  for (const record of records) {
    if (record.skip !== undefined) {
      parsed.push({ ok: false, code: record.skip.code, message: record.skip.message });
      continue;
    }
    try {
      const p = record.kind === 'json' ? await parseJsonRecord(record.text, renderer) : sourceFileRecord(record.text);
      parsed.push(p);
      texts.push(...recordTexts(p));
    } catch (err) {
      if (!isNdpError(err)) throw err;
      parsed.push({ ok: false, code: err.code, message: err.message });
    }
  }
  const ids = await tokenizer.encodeBatch(texts);
  let at = 0;
  return parsed.map((p): RecordResult => {
    if ('ok' in p) return p;
    const count = recordTexts(p).length;
    const mine = ids.slice(at, at + count);
    at += count;
    try {
      const { samples, overflow } = assembleRecord(p, mine, tokenizer.eosTokenId, options);
      return overflow === undefined ? { ok: true, samples } : { ok: true, samples, overflow };
    } catch (err) {
      if (!isNdpError(err)) throw err;
      return { ok: false, code: err.code, message: err.message };
    }
  });
}
