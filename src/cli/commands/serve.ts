/**
 * `ndp serve DATA.ndp...`: the data server (NDP.md §7). Prints one JSON ready line on standard
 * output when every listener is bound — `{"ready":true,"host","udp","ws","http","datasets",…}` — so
 * scripts and tests using port 0 can find the ports. SIGTERM / SIGINT: BYE with the cursor to every
 * client, flush, exit 0.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { DataServer } from '../../../server/data-server.js';
import { DEFAULT_SERVER_OPTIONS, type ServerOptions } from '../../../server/options.js';
import { parseRouteFlag, parseRoutesJson, type RouteRule } from '../../../server/router.js';
import { openPcapTap, PCAP_OPTIONS, PCAP_USAGE, type PcapFlagValues } from '../../capture/pcap-cli-options.js';
import { openNdpFile } from '../../dataset/ndp-file.js';
import type { SampleSource } from '../../dataset/sample.js';
import { NdpError } from '../../protocol/errors.js';

const d = DEFAULT_SERVER_OPTIONS;

export const usage = `usage: ndp serve DATA.ndp... [options]

Serves .ndp (or .qubgpu) files to trainers over UDP and WebSocket, with an HTTP control plane.
Prints {"ready":true,"udp":PORT,"ws":PORT,"http":PORT,...} on standard output once listening.

  --host ADDR             address every listener binds (default ${d.host}: loopback only)
  --udp PORT|off          UDP port (default ${d.udpPort}; 0 = any free port)
  --ws PORT|off           WebSocket port (default ${d.wsPort})
  --http PORT|off         HTTP control-plane port (default ${d.httpPort})
  --token SECRET          every session must present it (HTTP bearer, HELLO/SUBSCRIBE token)
  --tls-cert F --tls-key F  PEM certificate and key: WebSocket becomes wss://
  --routes FILE           JSON array of routing rules (NDP.md §7.11)
  --route RULE            one rule, e.g. src=CODE_REPO,action=set-dst:LORA (repeatable, after --routes)
  --inject-drop P         drop fraction P of first transmissions (default 0)
  --inject-corrupt P      flip one bit in fraction P of first transmissions (default 0)
  --inject-seed S         seed of the injection draws (default 0)
${PCAP_USAGE}
limits (NDP.md §7.13):
  --max-sessions N        (default ${d.maxSessions})
  --session-rate B/S      rate of a session that names none (default ${d.sessionRate})
  --max-session-rate B/S  (default ${d.maxSessionRate})
  --max-total-rate B/S    (default ${d.maxTotalRate})
  --max-window FRAMES     (default ${d.maxWindow})
  --max-datagram BYTES    (default ${d.maxDatagram})
  --retransmit-bytes B    retransmit buffer per session (default ${d.retransmitBytes})
  --ws-high-water B       bytes queued per connection before writing pauses (default ${d.wsHighWater})
  --ws-message-bytes B    frames coalesced per WebSocket message (default ${d.wsMessageBytes})
  --ws-max-message B      largest client WebSocket message (default ${d.wsMaxMessage})
  --max-handshakes N      HELLO/SUBSCRIBE per IP per 10 s (default ${d.maxHandshakes})
  --max-unvalidated N     unvalidated addresses tracked (default ${d.maxUnvalidated})
  --max-connections N     TCP connections held per listener, WebSocket and HTTP (default ${d.maxConnections})
  --idle-timeout MS       (default ${d.idleTimeoutMs})
  --heartbeat MS          (default ${d.heartbeatMs})
  --handshake-timeout MS  (default ${d.handshakeTimeoutMs})
  --ticket-ttl MS         (default ${d.ticketTtlMs})
  --recv-buffer BYTES     UDP SO_RCVBUF requested (default ${d.recvBufferBytes}; the kernel may cap it)
  --cache-bytes B         sample cache per data file (default 67108864); a dataset that fits is read from disk once

Exit status: 0 after a clean shutdown (SIGTERM / SIGINT), 1 on a startup error, 2 bad options.`;

function bad(message: string): never {
  throw new NdpError('NDP_ERR_SERVER_OPTION', message);
}

function int(name: string, text: string | undefined, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) bad(`--${name} must be an integer ${min}..${max}, got '${text}'`);
  return n;
}

function port(name: string, text: string | undefined, fallback: number | null): number | null {
  if (text === undefined) return fallback;
  if (text === 'off') return null;
  return int(name, text, 0, 65535)!;
}

function probability(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || n > 1) bad(`--${name} must be a number in [0, 1], got '${text}'`);
  return n;
}

const INT_FLAGS = {
  'max-sessions': ['maxSessions', 1],
  'session-rate': ['sessionRate', 1],
  'max-session-rate': ['maxSessionRate', 1],
  'max-total-rate': ['maxTotalRate', 1],
  'max-window': ['maxWindow', 1],
  'max-datagram': ['maxDatagram', 128],
  'retransmit-bytes': ['retransmitBytes', 0],
  'ws-high-water': ['wsHighWater', 1],
  // A message is flushed once it reaches this size, so it can exceed it by one frame; NDP.md §7.2
  // promises clients messages of at most 1 MiB.
  'ws-message-bytes': ['wsMessageBytes', 1, 1024 * 1024 - 65_543],
  'ws-max-message': ['wsMaxMessage', 64],
  'max-handshakes': ['maxHandshakes', 1],
  'max-unvalidated': ['maxUnvalidated', 1],
  'max-connections': ['maxConnections', 1],
  'idle-timeout': ['idleTimeoutMs', 1],
  heartbeat: ['heartbeatMs', 1],
  'handshake-timeout': ['handshakeTimeoutMs', 1],
  'ticket-ttl': ['ticketTtlMs', 1],
  'recv-buffer': ['recvBufferBytes', 0],
} as const;

/** Parses the flags into server options and the data files. */
export async function parseServeArgs(argv: string[]): Promise<{ files: string[]; options: Partial<ServerOptions>; cacheBytes: number | undefined }> {
  const intOptions = Object.fromEntries(Object.keys(INT_FLAGS).map((k) => [k, { type: 'string' as const }]));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      host: { type: 'string' },
      udp: { type: 'string' },
      ws: { type: 'string' },
      http: { type: 'string' },
      token: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      routes: { type: 'string' },
      route: { type: 'string', multiple: true },
      'inject-drop': { type: 'string' },
      'inject-corrupt': { type: 'string' },
      'inject-seed': { type: 'string' },
      'cache-bytes': { type: 'string' },
      ...intOptions,
      ...PCAP_OPTIONS,
    },
  });
  if (positionals.length === 0) bad('name at least one .ndp file to serve');
  const v = values as Record<string, string | string[] | undefined>;
  const options: Record<string, unknown> = {
    host: v.host,
    udpPort: port('udp', v.udp as string | undefined, d.udpPort),
    wsPort: port('ws', v.ws as string | undefined, d.wsPort),
    httpPort: port('http', v.http as string | undefined, d.httpPort),
  };
  if (v.token !== undefined) {
    if (v.token === '') bad('--token must not be empty');
    options.token = v.token;
  }
  for (const [flag, [key, min, max]] of Object.entries(INT_FLAGS) as Array<[string, readonly [string, number, number?]]>) options[key] = int(flag, v[flag] as string | undefined, min, max);
  if ((v['tls-cert'] === undefined) !== (v['tls-key'] === undefined)) bad('--tls-cert and --tls-key go together');
  if (v['tls-cert'] !== undefined) options.tls = { cert: await readFile(v['tls-cert'] as string), key: await readFile(v['tls-key'] as string) };
  const routes: RouteRule[] = v.routes === undefined ? [] : parseRoutesJson(await readFile(v.routes as string, 'utf8'));
  for (const text of (v.route as string[] | undefined) ?? []) routes.push(parseRouteFlag(text, routes.length));
  options.routes = routes;
  const drop = probability('inject-drop', v['inject-drop'] as string | undefined) ?? 0;
  const corrupt = probability('inject-corrupt', v['inject-corrupt'] as string | undefined) ?? 0;
  if (drop + corrupt > 1) bad('--inject-drop + --inject-corrupt must be at most 1');
  options.inject = { drop, corrupt, seed: int('inject-seed', v['inject-seed'] as string | undefined, 0, 0xffffffff) ?? 0 };
  options.tap = openPcapTap(v as PcapFlagValues);
  return { files: positionals, options: options as Partial<ServerOptions>, cacheBytes: int('cache-bytes', v['cache-bytes'] as string | undefined, 0) };
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = await parseServeArgs(argv);
  } catch (err) {
    const e = err as { code?: string; message: string };
    process.stderr.write(`ndp serve: ${e.code !== undefined && e.code.startsWith('NDP_ERR') ? `${e.code}: ` : ''}${e.message}\n${usage}\n`);
    return 2;
  }
  const sources: SampleSource[] = [];
  try {
    for (const file of parsed.files) sources.push(await openNdpFile(file, parsed.cacheBytes === undefined ? {} : { cacheBytes: parsed.cacheBytes }));
  } catch (err) {
    await Promise.all(sources.map((s) => s.close()));
    throw err;
  }
  // Whoever started us may stop reading our output (a closed pipe): that must not kill the server.
  process.stdout.on('error', () => undefined);
  const server = new DataServer(sources, parsed.options);
  const ports = await server.start();
  process.stdout.write(
    JSON.stringify({
      ready: true,
      host: server.options.host,
      udp: ports.udp,
      ws: ports.ws,
      http: ports.http,
      endpoints: server.endpoints(),
      datasets: server.catalog.list().map((s) => ({ name: s.name, src: s.srcName, samples: s.samples })),
      recvBufferBytes: server.udp?.recvBufferBytes ?? null,
    }) + '\n',
  );
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await server.shutdown();
  parsed.options.tap?.close?.();
  process.stdout.write(JSON.stringify({ stopped: true, drops: Object.fromEntries(server.metrics.dropCounts) }) + '\n');
  return 0;
}
