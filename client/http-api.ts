/**
 * The data server's HTTP control plane, client side (NDP.md §7.10), through undici: the catalog,
 * opening a session (`POST /v1/sessions` → ticket + endpoints), reading one, deleting one.
 * An HTTP error becomes NDP_ERR_REFUSED carrying the server's own `NDP_ERR_*` code; a connection
 * failure becomes NDP_ERR_UNREACHABLE.
 */
import { request } from 'undici';
import type { SessionParams } from '../src/protocol/control.js';
import { NdpError } from '../src/protocol/errors.js';
import type { AcceptInfo } from './session.js';

export interface OpenedSession extends AcceptInfo {
  readonly ticket: string;
  readonly ticketTtlMs: number;
  readonly endpoints: { readonly udp?: string; readonly ws?: string };
}

export interface DatasetInfo {
  readonly name: string;
  readonly src: number;
  readonly srcName?: string;
  readonly samples: number;
  readonly tokens: number;
  readonly tokenizer: { readonly name: string; readonly hash: string; readonly vocabSize: number };
}

export class HttpApi {
  /** @param base `http(s)://host:port`; @param token sent as `Authorization: Bearer`; @param timeoutMs per request, defaults to 10,000. */
  constructor(
    readonly base: string,
    private readonly token?: string,
    private readonly timeoutMs = 10_000,
  ) {}

  async datasets(): Promise<DatasetInfo[]> {
    return ((await this.call('GET', '/v1/datasets')) as { datasets: DatasetInfo[] }).datasets;
  }

  async openSession(params: SessionParams): Promise<OpenedSession> {
    return (await this.call('POST', '/v1/sessions', params)) as OpenedSession;
  }

  async session(id: number): Promise<Record<string, unknown>> {
    return (await this.call('GET', `/v1/sessions/${id}`)) as Record<string, unknown>;
  }

  async deleteSession(id: number): Promise<Record<string, unknown>> {
    return (await this.call('DELETE', `/v1/sessions/${id}`)) as Record<string, unknown>;
  }

  /** Prometheus text of `/metrics`. */
  async metrics(): Promise<string> {
    return (await this.call('GET', '/metrics', undefined, true)) as string;
  }

  private async call(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, text = false): Promise<unknown> {
    const headers: Record<string, string> = {};
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(`${this.base}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
    } catch (cause) {
      throw new NdpError('NDP_ERR_UNREACHABLE', `cannot reach ${this.base}${path}: ${(cause as Error).message}`, { cause });
    }
    const raw = await response.body.text();
    if (response.statusCode >= 400) {
      let code = `HTTP ${response.statusCode}`;
      let message = raw.slice(0, 200);
      try {
        const parsed = JSON.parse(raw) as { error?: { code?: string; message?: string } };
        code = parsed.error?.code ?? code;
        message = parsed.error?.message ?? message;
      } catch {
        // not JSON: keep the text
      }
      throw new NdpError('NDP_ERR_REFUSED', `server refused ${method} ${path}: ${code}: ${message} (HTTP ${response.statusCode})`);
    }
    if (text) return raw;
    try {
      return JSON.parse(raw) as unknown;
    } catch (cause) {
      throw new NdpError('NDP_ERR_REFUSED', `server answered ${method} ${path} with something that is not JSON`, { cause });
    }
  }
}
