/**
 * wss://: the server with a certificate (--tls-cert/--tls-key), the client trusting it through `ca`;
 * an untrusted certificate is refused as unreachable, not streamed.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../../client/client.js';
import { startServer, tempDir, writeDataset } from '../client/fixtures.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

t.test('a full epoch over wss:// with a self-signed certificate', { skip: hasOpenssl() ? false : 'openssl is not installed (needed to make a test certificate)' }, async (t) => {
  const dir = tempDir(t);
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const file = join(dir, 'data.ndp');
  const known = await writeDataset(file, 'data', 60);
  const server = await startServer(t, [file], ['--tls-cert', cert, '--tls-key', key]);
  await t.rejects(connect(`wss://127.0.0.1:${server.ws}`), { code: 'NDP_ERR_UNREACHABLE' }, 'an unknown certificate is refused');
  const client = await connect(`wss://127.0.0.1:${server.ws}`, { ca: readFileSync(cert) });
  const seen = new Set<number>();
  let wrong = 0;
  for await (const d of client.samples()) {
    seen.add(d.sample.index);
    if (Array.from(d.sample.tokens).join() !== known[d.sample.index]!.tokens.join()) wrong++;
  }
  t.equal(seen.size, 60);
  t.equal(wrong, 0);
  t.equal(client.stats.transport, 'ws');
  await client.close();
});
