/** Runs tshark with the generated dissector (test helper). */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const DISSECTOR = `${REPO_ROOT}protocol-spec/wireshark/ndpx.lua`;

/** Why tshark tests cannot run here, or undefined when tshark (with Lua) is available. */
export function tsharkMissing(): string | undefined {
  const probe = spawnSync('tshark', ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) return 'tshark is not installed (apt-get install tshark; .ci/run installs it)';
  if (!/with Lua/i.test(probe.stdout)) return 'this tshark is built without Lua';
  return undefined;
}

/** `tshark -r FILE -X lua_script:ndpx.lua ARGS…`, stdout as text (stderr's root warning ignored). */
export function tshark(file: string, args: string[]): string {
  return execFileSync('tshark', ['-n', '-r', file, '-X', `lua_script:${DISSECTOR}`, ...args], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** One row per packet: the values of each field, every occurrence (several NDP frames per packet). */
export function tsharkFields(file: string, fields: string[], filter = 'ndpx'): Array<Record<string, string[]>> {
  const out = tshark(file, ['-Y', filter, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=;', ...fields.flatMap((f) => ['-e', f])]);
  return out
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const cells = line.split('\t');
      return Object.fromEntries(fields.map((f, i) => [f, cells[i] === undefined || cells[i] === '' ? [] : cells[i]!.split(';')]));
    });
}
