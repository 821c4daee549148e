/**
 * One input record of `ndp convert` turned into text pieces, each trained on or not, before
 * tokenization. Formats (the first that matches wins):
 *
 * | record | SRC | pieces (trained = 1) |
 * | --- | --- | --- |
 * | `{"messages": [{role, content}, …]}` | CHAT | the chat template's text; assistant contents (and the end-of-turn token after each) 1, the rest 0 |
 * | `{"instruction", "input"?, "output"}` | INSTRUCTION | as messages user = instruction (+ "\n\n" + input), assistant = output |
 * | `{"prompt", "completion"}` | INSTRUCTION | prompt 0, completion 1, then EOS 1 (as TRL does) |
 * | `{"text"}` | TEXT_CORPUS | the text, 1 |
 * | a source file (directory input) | CODE_REPO | its content, 1 |
 *
 * Splitting at these boundaries and tokenizing each piece gives the ids of the whole text whenever a
 * boundary falls next to a special token (true of ChatML templates such as Qwen's); prompt and
 * completion are tokenized apart by definition.
 */
import { NdpError } from '../protocol/errors.js';
import { SRC } from '../protocol/registry.js';
import type { ChatMessage } from './tokenizer.js';

export interface Piece {
  readonly text: string;
  readonly trained: boolean;
}

export interface ParsedRecord {
  readonly src: number;
  readonly pieces: readonly Piece[];
  /** Append the tokenizer's EOS token, trained on. */
  readonly appendEos: boolean;
}

/** What a record needs from the tokenizer to be split into pieces. */
export interface TemplateRenderer {
  applyChatTemplate(messages: readonly ChatMessage[]): Promise<string>;
  /** Text of the EOS token (Qwen3: `<|im_end|>`), to train on the end of each assistant turn. */
  readonly eosText: string | undefined;
}

function bad(message: string): NdpError {
  return new NdpError('NDP_ERR_INPUT_UNKNOWN_FORMAT', message);
}

function isString(value: unknown): value is string {
  return typeof value === 'string';
}

/** Pieces of a conversation: the rendered template, with each assistant content found in it. */
export async function chatPieces(messages: readonly ChatMessage[], renderer: TemplateRenderer): Promise<Piece[]> {
  const rendered = await renderer.applyChatTemplate(messages);
  const pieces: Piece[] = [];
  let cursor = 0;
  let trainedAny = false;
  for (const [i, message] of messages.entries()) {
    const content = message.content;
    if (content === '') continue;
    let at = rendered.indexOf(content, cursor);
    let length = content.length;
    if (at < 0) {
      // Templates may strip a message (Qwen3 trims leading newlines of assistant content).
      const trimmed = content.trim();
      at = trimmed === '' ? -1 : rendered.indexOf(trimmed, cursor);
      length = trimmed.length;
    }
    if (at < 0) {
      if (message.role === 'assistant') throw bad(`message ${i} (assistant) does not appear in the text the chat template renders`);
      continue;
    }
    let end = at + length;
    if (message.role === 'assistant') {
      if (renderer.eosText !== undefined && rendered.startsWith(renderer.eosText, end)) end += renderer.eosText.length;
      if (at > cursor) pieces.push({ text: rendered.slice(cursor, at), trained: false });
      pieces.push({ text: rendered.slice(at, end), trained: true });
      trainedAny = true;
      cursor = end;
    } else {
      // Keep untrained text together up to the end of this message, so assistant text is never searched for inside it.
      pieces.push({ text: rendered.slice(cursor, end), trained: false });
      cursor = end;
    }
  }
  if (cursor < rendered.length) pieces.push({ text: rendered.slice(cursor), trained: false });
  if (!trainedAny) throw new NdpError('NDP_ERR_INPUT_EMPTY', 'conversation has no assistant message to train on');
  return mergeNeighbours(pieces);
}

/** Joins neighbouring pieces of the same kind: fewer boundaries, the same text. */
function mergeNeighbours(pieces: readonly Piece[]): Piece[] {
  const out: Piece[] = [];
  for (const piece of pieces) {
    const last = out[out.length - 1];
    if (last !== undefined && last.trained === piece.trained) out[out.length - 1] = { text: last.text + piece.text, trained: piece.trained };
    else out.push(piece);
  }
  return out;
}

function parseMessages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw bad('"messages" must be a non-empty array');
  return value.map((m: unknown, i) => {
    const role = (m as { role?: unknown } | null)?.role;
    const content = (m as { content?: unknown } | null)?.content;
    if (!isString(role) || !isString(content)) throw bad(`messages[${i}] must have string "role" and "content"`);
    return { role, content };
  });
}

/** Parses one JSONL line. Errors: NDP_ERR_INPUT_BAD_JSON, NDP_ERR_INPUT_UNKNOWN_FORMAT, NDP_ERR_INPUT_EMPTY. */
export async function parseJsonRecord(line: string, renderer: TemplateRenderer): Promise<ParsedRecord> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (cause) {
    throw new NdpError('NDP_ERR_INPUT_BAD_JSON', `not JSON: ${(cause as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new NdpError('NDP_ERR_INPUT_BAD_JSON', 'not a JSON object');
  const record = value as Record<string, unknown>;
  if (record.messages !== undefined) {
    return { src: SRC.CHAT, pieces: await chatPieces(parseMessages(record.messages), renderer), appendEos: false };
  }
  if (record.instruction !== undefined || record.output !== undefined) {
    const { instruction, input, output } = record;
    if (!isString(instruction) || !isString(output) || (input !== undefined && input !== null && !isString(input))) {
      throw bad('"instruction" and "output" must be strings, "input" a string if present');
    }
    const user = isString(input) && input !== '' ? `${instruction}\n\n${input}` : instruction;
    return { src: SRC.INSTRUCTION, pieces: await chatPieces([{ role: 'user', content: user }, { role: 'assistant', content: output }], renderer), appendEos: false };
  }
  if (record.prompt !== undefined || record.completion !== undefined) {
    if (!isString(record.prompt) || !isString(record.completion)) throw bad('"prompt" and "completion" must both be strings');
    if (record.completion === '') throw new NdpError('NDP_ERR_INPUT_EMPTY', 'empty completion: nothing to train on');
    return { src: SRC.INSTRUCTION, pieces: [{ text: record.prompt, trained: false }, { text: record.completion, trained: true }], appendEos: true };
  }
  if (record.text !== undefined) {
    if (!isString(record.text)) throw bad('"text" must be a string');
    if (record.text === '') throw new NdpError('NDP_ERR_INPUT_EMPTY', 'empty "text"');
    return { src: SRC.TEXT_CORPUS, pieces: [{ text: record.text, trained: true }], appendEos: false };
  }
  throw bad(`no "text", "prompt"+"completion", "messages" or "instruction"+"output" (keys: ${Object.keys(record).slice(0, 8).join(', ') || 'none'})`);
}

/** A source file as a CODE_REPO record. */
export function sourceFileRecord(content: string): ParsedRecord {
  if (content.trim() === '') throw new NdpError('NDP_ERR_INPUT_EMPTY', 'empty file');
  return { src: SRC.CODE_REPO, pieces: [{ text: content, trained: true }], appendEos: false };
}
