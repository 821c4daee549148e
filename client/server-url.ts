/**
 * Where a client connects (issue #5, NDP.md §7.2, §7.10): a data URL opens the session in-band
 * (`udp://host:port`, `ws://host:port[/path]`, `wss://…`); an HTTP base URL (`http(s)://host:port`)
 * opens it with `POST /v1/sessions` and attaches over the chosen transport.
 */
import { NdpError } from '../src/protocol/errors.js';
import { DEFAULT_PORTS } from '../src/protocol/registry.js';

export type ServerTarget =
  | { readonly mode: 'inband'; readonly kind: 'udp'; readonly host: string; readonly port: number }
  | { readonly mode: 'inband'; readonly kind: 'ws'; readonly url: string }
  | { readonly mode: 'http'; readonly kind: 'udp' | 'ws'; readonly base: string; readonly host: string };

/** Parses `url`; `transport` picks the data transport for an HTTP base URL (defaults to udp). */
export function parseServerUrl(url: string, transport: 'udp' | 'ws' = 'udp'): ServerTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new NdpError('NDP_ERR_BAD_URL', `not a URL: '${url}' (expected udp://HOST:PORT, ws://HOST:PORT, wss://…, or http://HOST:PORT)`);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new NdpError('NDP_ERR_BAD_URL', `no host in '${url}'`);
  switch (parsed.protocol) {
    case 'udp:':
      return { mode: 'inband', kind: 'udp', host, port: parsed.port === '' ? DEFAULT_PORTS.udp : Number(parsed.port) };
    case 'ws:':
    case 'wss:': {
      const port = parsed.port === '' ? (parsed.protocol === 'ws:' ? DEFAULT_PORTS.ws : 443) : Number(parsed.port);
      const path = parsed.pathname === '/' || parsed.pathname === '' ? '/v1/stream' : parsed.pathname;
      return { mode: 'inband', kind: 'ws', url: `${parsed.protocol}//${parsed.hostname}:${port}${path}${parsed.search}` };
    }
    case 'http:':
    case 'https:': {
      const port = parsed.port === '' ? (parsed.protocol === 'http:' ? DEFAULT_PORTS.http : 443) : Number(parsed.port);
      return { mode: 'http', kind: transport, base: `${parsed.protocol}//${parsed.hostname}:${port}`, host };
    }
    default:
      throw new NdpError('NDP_ERR_BAD_URL', `unsupported scheme '${parsed.protocol}' in '${url}' (udp, ws, wss, http, https)`);
  }
}
