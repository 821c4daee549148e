/**
 * NDP.md §9 documents every error code: this fails when a code of src/protocol/errors.ts's
 * ERROR_CODES is missing from the §9 table, or the table names a code that does not exist.
 * Fix: `npm run build && node dist/test/protocol/make-error-table.js`.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { ERROR_CODES } from '../../src/protocol/errors.js';
import { BEGIN, END, repoRoot } from './make-error-table.js';

const spec = readFileSync(repoRoot() + 'protocol-spec/NDP.md', 'utf8');
const section = spec.slice(spec.indexOf('## 9. Error codes'), spec.indexOf('\n## 10'));
const table = section.slice(section.indexOf(BEGIN), section.indexOf(END));
const documented = new Set([...table.matchAll(/^\| `(NDP_ERR_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]!));

t.test('§9 exists and holds the generated table', async (t) => {
  t.ok(section.startsWith('## 9. Error codes'));
  t.ok(table.length > 0, 'the error-table markers are in §9');
});

t.test('every code of ERROR_CODES is in the §9 table', async (t) => {
  const missing = Object.keys(ERROR_CODES).filter((code) => !documented.has(code));
  t.same(missing, [], 'run node dist/test/protocol/make-error-table.js');
});

t.test('the §9 table names no code that errors.ts lacks', async (t) => {
  const stale = [...documented].filter((code) => !(code in ERROR_CODES));
  t.same(stale, []);
});

t.test('every code is NDP_ERR_ + upper-case words, and its description is one line', async (t) => {
  for (const [code, meaning] of Object.entries(ERROR_CODES)) {
    if (!/^NDP_ERR_[A-Z0-9_]+$/.test(code) || meaning.length === 0 || meaning.includes('\n')) t.fail(code);
  }
  t.pass('checked');
});
