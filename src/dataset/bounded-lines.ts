/**
 * Splits a byte stream into lines (ended by "\n", a "\r" before it dropped) without ever holding
 * more than `maxLineBytes` + 1 bytes of one line: a longer line is streamed past and reported by
 * its length alone. readline would buffer a line of any length, so one huge line in a JSONL input
 * could grow memory without limit.
 */

/** One line of the input: its text, or only its length when it was longer than the limit. */
export type BoundedLine =
  | { readonly lineNumber: number; readonly text: string; readonly bytes: number; readonly tooLong?: undefined }
  /** `lineBytes` is the length without its line ending; `bytes` counts the ending too. */
  | { readonly lineNumber: number; readonly tooLong: true; readonly lineBytes: number; readonly bytes: number };

const LF = 0x0a;
const CR = 0x0d;

/**
 * Lines of `chunks` in order, numbered from 1. A line's length is its bytes without "\n" or
 * "\r\n"; a line of exactly `maxLineBytes` bytes is yielded, a longer one is yielded as `tooLong`.
 * The last line needs no "\n".
 */
export async function* boundedLines(chunks: AsyncIterable<Buffer>, maxLineBytes: number): AsyncGenerator<BoundedLine> {
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) throw new RangeError(`maxLineBytes must be a positive integer, got ${maxLineBytes}`);
  // Up to maxLineBytes + 1 bytes are kept: the extra one may be the "\r" of a "\r\n" ending.
  const keepLimit = maxLineBytes + 1;
  let parts: Buffer[] = [];
  let kept = 0;
  let lineLength = 0;
  let overflowed = false;
  let lineNumber = 0;
  // The last byte of the current line, also when its bytes are no longer kept (to recognise "\r\n").
  let lastByte = -1;

  const finish = (endingBytes: number): BoundedLine => {
    lineNumber++;
    let line = overflowed ? undefined : parts.length === 1 ? parts[0]! : Buffer.concat(parts, kept);
    let length = lineLength;
    if (length > 0 && lastByte === CR) {
      length--;
      endingBytes++;
      line = line?.subarray(0, line.length - 1);
    }
    parts = [];
    kept = 0;
    lineLength = 0;
    overflowed = false;
    lastByte = -1;
    if (line === undefined || length > maxLineBytes) return { lineNumber, tooLong: true, lineBytes: length, bytes: length + endingBytes };
    return { lineNumber, text: line.toString('utf8'), bytes: length + endingBytes };
  };

  /** `copy`: the piece outlives its chunk (a line's start carried to the next chunk), so it is copied. */
  const append = (piece: Buffer, copy: boolean): void => {
    if (piece.length === 0) return;
    lineLength += piece.length;
    lastByte = piece[piece.length - 1]!;
    if (overflowed) return;
    if (kept + piece.length > keepLimit) {
      overflowed = true;
      parts = [];
      kept = 0;
      return;
    }
    // A view of a carried piece would keep its whole chunk alive (and the stream may reuse it).
    parts.push(copy ? Buffer.from(piece) : piece);
    kept += piece.length;
  };

  for await (const chunk of chunks) {
    let at = 0;
    for (;;) {
      const end = chunk.indexOf(LF, at);
      if (end < 0) break;
      append(chunk.subarray(at, end), false);
      yield finish(1);
      at = end + 1;
    }
    append(chunk.subarray(at), true);
  }
  if (lineLength > 0) yield finish(0);
}
