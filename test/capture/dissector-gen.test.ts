/** The committed Lua dissector is what the generator makes from the registry, and tshark loads it. */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { DISSECTOR_PATH, generateDissector } from '../../src/capture/dissector-gen.js';
import { REGISTRY } from '../../src/protocol/registry.js';
import { REPO_ROOT, tsharkMissing, DISSECTOR } from './tshark.js';

/** The display-filter fields the README documents. */
const DOCUMENTED_FIELDS = [
  'ndpx.magic', 'ndpx.src', 'ndpx.dst', 'ndpx.typ', 'ndpx.len', 'ndpx.payload', 'ndpx.token', 'ndpx.crc', 'ndpx.crc.computed', 'ndpx.crc.status',
  'ndpx.seg.version', 'ndpx.seg.flags', 'ndpx.seg.flags.retransmit', 'ndpx.seg.flags.last_fragment', 'ndpx.seg.flags.eval', 'ndpx.seg.source',
  'ndpx.seg.session', 'ndpx.seg.seq', 'ndpx.seg.epoch', 'ndpx.seg.position', 'ndpx.seg.sample', 'ndpx.seg.frag_index', 'ndpx.seg.frag_count',
  'ndpx.seg.frag_offset', 'ndpx.seg.body_length', 'ndpx.seg.body_crc', 'ndpx.seg.fragment',
  'ndpx.ctl.type', 'ndpx.ctl.session', 'ndpx.ctl.ack', 'ndpx.ctl.window', 'ndpx.ctl.nonce', 'ndpx.ctl.next_seq', 'ndpx.ctl.range.first',
  'ndpx.ctl.range.last', 'ndpx.ctl.code', 'ndpx.ctl.reason', 'ndpx.ctl.message', 'ndpx.ctl.key', 'ndpx.ctl.value',
];

t.test('protocol-spec/wireshark/ndpx.lua is up to date with registry.json (npm run gen:dissector)', async (t) => {
  const committed = readFileSync(`${REPO_ROOT}${DISSECTOR_PATH}`, 'utf8');
  t.ok(committed === generateDissector(), 'regenerate with `npm run gen:dissector` and commit the result');
  for (const table of ['src', 'dst', 'typ', 'control'] as const) {
    for (const [name, entry] of Object.entries(REGISTRY[table])) t.match(committed, `[${entry.code}] = "${name}"`, `${table} ${name}`);
  }
  t.match(committed, `local UDP_PORT = ${REGISTRY.ports.udp}`);
  const readme = readFileSync(`${REPO_ROOT}README.md`, 'utf8');
  for (const f of DOCUMENTED_FIELDS) t.match(readme, `\`${f}\``, `README documents ${f}`);
});

t.test('tshark loads the dissector and knows every documented field', { skip: tsharkMissing() }, async (t) => {
  const fields = execFileSync('tshark', ['-G', 'fields', '-X', `lua_script:${DISSECTOR}`], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
  const ndpx = new Set(fields.split('\n').filter((l) => l.includes('\tndpx')).map((l) => l.split('\t')[2]));
  t.ok(fields.split('\n').some((l) => l.startsWith('P\tNeural Datagram Protocol\tndpx')), 'protocol ndpx registered');
  for (const f of DOCUMENTED_FIELDS) t.ok(ndpx.has(f), f);
  const heuristics = execFileSync('tshark', ['-G', 'heuristic-decodes', '-X', `lua_script:${DISSECTOR}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  t.match(heuristics, /^udp\s+ndpx\s+T$/m, 'UDP heuristic registered and enabled');
  t.match(heuristics, /^ws\s+ndpx\s+T$/m, 'WebSocket heuristic registered and enabled');
});
