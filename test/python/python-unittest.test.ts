/**
 * Runs the Python package's unittest suite (test/python/test_*.py) as a child process with every
 * distinct Python interpreter found here: the stdlib-only tests always, the torch tests where that
 * interpreter imports torch (they skip with their reason elsewhere). Fails when unittest fails.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pythonCandidates } from '../../client/torch-backend.js';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));

function run(python: string, args: string[]): Promise<{ code: number | null; output: string; error?: string }> {
  return new Promise((resolve) => {
    execFile(python, args, { cwd: REPO, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null;
      resolve({ code, output: stdout + stderr, ...(err !== null && code === null ? { error: err.message } : {}) });
    });
  });
}

// One run per interpreter, however many names lead to it (python3 may be /usr/bin/python3).
const interpreters = new Map<string, string>();
for (const python of pythonCandidates()) {
  const probe = await run(python, ['-c', 'import os, sys; print(os.path.realpath(sys.executable))']);
  if (probe.code === 0) interpreters.set(probe.output.trim(), python);
}

t.test('python3 -m unittest test/python', { skip: interpreters.size === 0 ? 'no Python interpreter on this machine' : false }, async (t) => {
  for (const [executable, python] of interpreters) {
    const result = await run(python, ['-m', 'unittest', 'discover', '-s', 'test/python', '-t', 'test/python', '-p', 'test_*.py']);
    const summary = result.output.split('\n').filter((line) => /^(Ran \d+ tests|OK|FAILED)/.test(line)).join('; ');
    t.equal(result.code, 0, `${executable}: ${summary}`);
    if (result.code !== 0) t.comment(result.output.slice(-8000));
  }
});
