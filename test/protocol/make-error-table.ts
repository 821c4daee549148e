/**
 * Writes the error-code table of NDP.md §9 from src/protocol/errors.ts: every code of ERROR_CODES with
 * its area (the comment heading above it in errors.ts), its drop-counter label and its description.
 * Run `node dist/test/protocol/make-error-table.js` after adding codes; test/protocol/error-table.test.ts
 * fails while a code is missing from the table.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ERROR_CODES, dropLabel, type NdpErrorCode } from '../../src/protocol/errors.js';

export const BEGIN = '<!-- error-table:begin -->';
export const END = '<!-- error-table:end -->';

export function repoRoot(): string {
  return fileURLToPath(new URL('../../..', import.meta.url));
}

/** The area of each code: the `// heading` comment above it in errors.ts. */
export function codeAreas(source: string): Map<string, string> {
  const areas = new Map<string, string>();
  let area = '';
  for (const line of source.split('\n')) {
    const heading = /^\s*\/\/\s*(.+?)\s*$/.exec(line);
    if (heading !== null) area = heading[1]!;
    const code = /^\s*(NDP_ERR_[A-Z0-9_]+)\s*:/.exec(line);
    if (code !== null) areas.set(code[1]!, area);
  }
  return areas;
}

export function errorTable(): string {
  const areas = codeAreas(readFileSync(repoRoot() + 'src/protocol/errors.ts', 'utf8'));
  const cell = (text: string): string => text.replace(/\|/g, '\\|');
  const rows = Object.entries(ERROR_CODES).map(
    ([code, meaning]) => `| \`${code}\` | ${cell(areas.get(code) ?? '')} | \`${dropLabel(code as NdpErrorCode)}\` | ${cell(meaning)} |`,
  );
  return ['| code | area | counter label | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** NDP.md with the table between the markers replaced. */
export function specWithTable(spec: string): string {
  const begin = spec.indexOf(BEGIN);
  const end = spec.indexOf(END);
  if (begin < 0 || end < begin) throw new Error('NDP.md lacks the error-table markers');
  return `${spec.slice(0, begin + BEGIN.length)}\n${errorTable()}\n${spec.slice(end)}`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const path = repoRoot() + 'protocol-spec/NDP.md';
  writeFileSync(path, specWithTable(readFileSync(path, 'utf8')));
  process.stdout.write(`wrote the error table of ${path} (${Object.keys(ERROR_CODES).length} codes)\n`);
}
