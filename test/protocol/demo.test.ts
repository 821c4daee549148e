import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runDemo } from '../../src/cli/commands/demo.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const base = { samples: 300, datagram: 1472, mode: 'stream' as const, lose: 0.02, corrupt: 0.02, duplicate: 0.02, garbage: 0.01, reorder: 8, seed: 3 };

t.test('every sample is delivered intact or dropped with a reason, in both modes and frame sizes', async (t) => {
  for (const variant of [{}, { mode: 'datagram' as const }, { datagram: 65_543 }, { datagram: 49, samples: 20 }, { corrupt: 0.3, garbage: 0.2, samples: 100 }]) {
    const report = runDemo({ ...base, ...variant });
    const dropped = Object.values(report.samplesDropped).reduce((s, n) => s + n, 0);
    t.same(report.problems, [], JSON.stringify(variant));
    t.equal(report.samplesDelivered + dropped, report.samplesSent);
    t.equal(report.deliveredButDifferent, 0);
  }
});

t.test('without faults everything is delivered', async (t) => {
  const report = runDemo({ ...base, lose: 0, corrupt: 0, duplicate: 0, garbage: 0 });
  t.equal(report.samplesDelivered, 300);
  t.same(report.samplesDropped, {});
  t.equal(report.bytes.skipped, 0);
});

t.test('same seed, same report', async (t) => {
  t.same(runDemo(base), runDemo(base));
});

t.test('`ndp demo` runs as a process and exits 0; bad flags exit non-zero with a message', async (t) => {
  const ok = spawnSync(process.execPath, ['dist/src/cli/main.js', 'demo', '--samples', '200', '--json'], { cwd: root, encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stderr);
  const report = JSON.parse(ok.stdout) as { samplesSent: number; problems: string[] };
  t.equal(report.samplesSent, 200);
  t.same(report.problems, []);
  const bad = spawnSync(process.execPath, ['dist/src/cli/main.js', 'demo', '--lose', '2'], { cwd: root, encoding: 'utf8' });
  t.equal(bad.status, 1);
  t.match(bad.stderr, /--lose must be a number 0\.\.1/);
});
