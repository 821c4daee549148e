/** `ndp inspect FILE.pcap` through the real CLI (a child process): exit codes and messages on bad input. */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import t from 'tap';
import { PcapWriter } from '../../src/capture/pcap-writer.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { DST, SRC, TYP } from '../../src/protocol/registry.js';
import { REPO_ROOT } from './tshark.js';
import { tempDir } from '../temp-dir.js';

const dir = tempDir(t, 'ndp-inspect-pcap-');
const ndp = (args: string[]): { status: number | null; stdout: string; stderr: string } =>
  spawnSync(process.execPath, [`${REPO_ROOT}dist/src/cli/main.js`, 'inspect', ...args], { encoding: 'utf8' });

t.test('good capture: frames and summary; --udp-port makes a port NDP; exit 0', async (t) => {
  const file = `${dir}/ok.pcap`;
  const w = new PcapWriter(file);
  const frame = encodeFrame({ src: SRC.TEXT_CORPUS, dst: DST.EMBEDDING, typ: TYP.TOKEN_IDS, payload: Uint8Array.of(0, 0, 0, 7) });
  w.udp({ address: '127.0.0.1', port: 5000 }, { address: '127.0.0.1', port: 6000 }, frame);
  w.udp({ address: '127.0.0.1', port: 5000 }, { address: '127.0.0.1', port: 6000 }, Uint8Array.of(1, 2, 3));
  w.close();
  const plain = ndp([file]);
  t.equal(plain.status, 0);
  t.match(plain.stdout, /TEXT_CORPUS→EMBEDDING TOKEN_IDS len=4 crc=ok/);
  t.match(plain.stdout, /summary: 1 NDP frames in 2 packets/);
  const onPort = ndp([file, '--udp-port', '6000', '--summary']);
  t.match(onPort.stdout, /malformed: {4}NDP_ERR_BAD_MAGIC=1/, 'a non-frame datagram on an NDP port is reported with its code');
});

t.test('bad input: not a capture (1), missing file (1), bad options (2)', async (t) => {
  const garbage = `${dir}/garbage.pcap`;
  writeFileSync(garbage, 'this is not a capture file at all');
  const notCapture = ndp([garbage]);
  t.equal(notCapture.status, 1);
  t.match(notCapture.stderr, /NDP_ERR_BAD_CAPTURE: .*not a pcap or pcapng file/);
  const missing = ndp([`${dir}/missing.pcapng`]);
  t.equal(missing.status, 1);
  t.match(missing.stderr, /ENOENT/);
  const badSession = ndp([garbage, '--session', '1.5']);
  t.equal(badSession.status, 2);
  t.match(badSession.stderr, /--session must be a session id/);
  const badFlag = ndp([garbage, '--frobnicate']);
  t.equal(badFlag.status, 2);
});

t.test('--help after a capture file lists the capture options (and the .ndp ones): exit 0', async (t) => {
  for (const args of [['x.pcap', '--help'], ['--help'], ['x.ndp', '-h']]) {
    const help = ndp(args);
    t.equal(help.status, 0, args.join(' '));
    t.match(help.stdout, /usage: ndp inspect FILE\.pcap\|FILE\.pcapng/, 'the capture usage');
    t.match(help.stdout, /--udp-port N/, 'a capture option');
    t.match(help.stdout, /--reindex/, 'an .ndp option');
  }
});
