/**
 * The records of `ndp convert`'s inputs, in a fixed order: JSONL files (plain or gzip: `.gz`) line
 * by line; directories as the source files matching the globs, walked in byte order of their
 * relative paths (so the output does not depend on the file system's listing order); any other file
 * as one source file. Unreadable inputs are NDP_ERR_INPUT_UNREADABLE; a source file that is binary
 * or over the size limit, and a JSONL line over the line limit (streamed past, never held whole),
 * are yielded as skipped records with their reason.
 */
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { createGunzip } from 'node:zlib';
import { NdpError } from '../protocol/errors.js';
import { boundedLines } from './bounded-lines.js';
import { DEFAULT_SOURCE_GLOB, globToRegExp } from './glob.js';

export interface InputRecord {
  /** `file:line` for JSONL, the file path for source files. */
  readonly where: string;
  readonly kind: 'json' | 'source';
  readonly text: string;
  /** Input bytes this record accounts for (progress). */
  readonly bytes: number;
  /** Set when the record is skipped before parsing (binary or too large source file, too long JSONL line). */
  readonly skip?: { readonly code: string; readonly message: string };
}

export interface InputOptions {
  /** Globs selecting files in directory inputs. Defaults to DEFAULT_SOURCE_GLOB (common source and text files). */
  readonly globs?: readonly string[];
  /** Largest source file taken from a directory; larger ones are skipped and counted. Defaults to 1 MiB. */
  readonly maxFileBytes?: number;
  /** Longest JSONL line in bytes (without its "\n" or "\r\n"); longer lines are skipped and counted. Defaults to 64 MiB (DEFAULT_MAX_LINE_BYTES). */
  readonly maxLineBytes?: number;
}

/** Default of InputOptions.maxLineBytes (`--max-line-bytes`): 64 MiB. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;

/** Directory names never descended into: version control and dependency trees. */
const SKIPPED_DIRS = new Set(['.git', '.hg', '.svn', 'node_modules']);

function isJsonl(path: string): boolean {
  return /\.(jsonl|ndjson|json)(\.gz)?$/i.test(path) || /\.gz$/i.test(path);
}

/** Total bytes of the inputs (for progress) and a check that each exists and is readable. */
export async function inputBytes(paths: readonly string[]): Promise<number> {
  let total = 0;
  for (const path of paths) {
    try {
      const s = await stat(path);
      total += s.isDirectory() ? 0 : s.size;
    } catch (cause) {
      throw new NdpError('NDP_ERR_INPUT_UNREADABLE', `${path}: ${(cause as Error).message}`, { cause });
    }
  }
  return total;
}

async function listFiles(root: string, dir: string, out: string[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) await listFiles(root, path, out);
    } else if (entry.isFile()) {
      out.push(relative(root, path).split(sep).join('/'));
    }
  }
}

/** Files under `root` matching any of `globs`, relative paths sorted by their UTF-16 code units (deterministic). */
export async function matchFiles(root: string, globs: readonly string[]): Promise<string[]> {
  const patterns = globs.map(globToRegExp);
  const all: string[] = [];
  await listFiles(root, root, all);
  return all.filter((p) => patterns.some((re) => re.test(p))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

async function* jsonlRecords(path: string, maxLineBytes: number): AsyncGenerator<InputRecord> {
  const file = createReadStream(path);
  const stream = /\.gz$/i.test(path) ? file.pipe(createGunzip()) : file;
  // Errors of the file reach the loop below through the gunzip stream it feeds.
  if (stream !== file) file.on('error', (err) => stream.destroy(err));
  let lineNumber = 0;
  try {
    for await (const line of boundedLines(stream as AsyncIterable<Buffer>, maxLineBytes)) {
      lineNumber = line.lineNumber;
      const where = `${path}:${line.lineNumber}`;
      if (line.tooLong) {
        yield { where, kind: 'json', text: '', bytes: line.bytes, skip: { code: 'NDP_ERR_INPUT_LINE_TOO_LONG', message: `line of ${line.lineBytes} bytes, more than --max-line-bytes ${maxLineBytes}` } };
        continue;
      }
      if (line.text.trim() === '') continue;
      yield { where, kind: 'json', text: line.text, bytes: line.bytes };
    }
  } catch (cause) {
    throw new NdpError('NDP_ERR_INPUT_UNREADABLE', `${path}: read failed after line ${lineNumber}: ${(cause as Error).message}`, { cause });
  } finally {
    stream.destroy();
    file.destroy();
  }
}

async function sourceRecord(path: string, maxFileBytes: number): Promise<InputRecord> {
  const size = (await stat(path)).size;
  if (size > maxFileBytes) {
    return { where: path, kind: 'source', text: '', bytes: size, skip: { code: 'NDP_ERR_INPUT_TOO_LARGE', message: `${size} bytes, more than --max-file-bytes ${maxFileBytes}` } };
  }
  const bytes = await readFile(path);
  if (bytes.subarray(0, 8192).includes(0)) return { where: path, kind: 'source', text: '', bytes: size, skip: { code: 'NDP_ERR_INPUT_BINARY', message: 'binary file (NUL byte)' } };
  return { where: path, kind: 'source', text: bytes.toString('utf8'), bytes: size };
}

/** Every record of every input, in order. */
export async function* readInputs(paths: readonly string[], options: InputOptions = {}): AsyncGenerator<InputRecord> {
  const maxFileBytes = options.maxFileBytes ?? 1024 * 1024;
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  if (!Number.isSafeInteger(maxLineBytes) || maxLineBytes < 1) throw new RangeError(`maxLineBytes must be a positive integer, got ${maxLineBytes}`);
  for (const path of paths) {
    let info;
    try {
      info = await stat(path);
    } catch (cause) {
      throw new NdpError('NDP_ERR_INPUT_UNREADABLE', `${path}: ${(cause as Error).message}`, { cause });
    }
    try {
      if (info.isDirectory()) {
        for (const rel of await matchFiles(path, options.globs ?? [DEFAULT_SOURCE_GLOB])) yield await sourceRecord(join(path, rel), maxFileBytes);
      } else if (isJsonl(path)) {
        yield* jsonlRecords(path, maxLineBytes);
      } else {
        yield await sourceRecord(path, Infinity);
      }
    } catch (cause) {
      if (cause instanceof NdpError) throw cause;
      throw new NdpError('NDP_ERR_INPUT_UNREADABLE', `${path}: ${(cause as Error).message}`, { cause });
    }
  }
}
