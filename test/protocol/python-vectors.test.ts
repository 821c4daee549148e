/**
 * A second receiver, written in Python from NDP.md alone (protocol-spec/vectors/check_vectors.py),
 * must pass the same conformance vectors: evidence that the spec is complete enough to implement.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const python = spawnSync('python3', ['--version'], { encoding: 'utf8' });

t.test('the independent Python receiver passes every vector', { skip: python.status === 0 ? false : 'python3 is not installed here' }, async (t) => {
  const run = spawnSync('python3', ['protocol-spec/vectors/check_vectors.py'], { cwd: root, encoding: 'utf8' });
  t.equal(run.status, 0, run.stdout + run.stderr);
  t.match(run.stdout, /\d+ checks, 0 failed/);
});
