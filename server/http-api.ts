/**
 * The HTTP control plane (NDP.md §7.10) on node:http: datasets, sessions, health, metrics. Every
 * error is `{"error": {"code", "message"}}` with a status that means what it says.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { NdpError, isNdpError } from '../src/protocol/errors.js';
import type { Catalog } from './catalog.js';
import type { ServerMetrics } from './metrics.js';
import { listenHttp } from './listen-http.js';
import type { ServerOptions } from './options.js';
import type { SessionManager } from './session-manager.js';

/** Largest request body accepted (NDP.md §7.10). */
export const MAX_REQUEST_BYTES = 64 * 1024;

const STATUS_OF: Record<string, number> = {
  NDP_ERR_BAD_PARAMS: 400,
  NDP_ERR_BAD_JSON: 400,
  NDP_ERR_UNAUTHORIZED: 401,
  NDP_ERR_UNKNOWN_DATASET: 404,
  NDP_ERR_UNKNOWN_SESSION: 404,
  NDP_ERR_NOT_FOUND: 404,
  NDP_ERR_METHOD_NOT_ALLOWED: 405,
  NDP_ERR_REQUEST_TOO_LARGE: 413,
  NDP_ERR_TOO_MANY_SESSIONS: 503,
  NDP_ERR_SHUTDOWN: 503,
};

export interface HttpEndpoints {
  /** `udp://HOST:PORT` and `ws://HOST:PORT/v1/stream`, as clients should use them. */
  udp?: string;
  ws?: string;
}

export class HttpApi {
  private server: Server | undefined;
  private readonly started = Date.now();

  constructor(
    private readonly catalog: Catalog,
    private readonly manager: SessionManager,
    private readonly metrics: ServerMetrics,
    private readonly options: ServerOptions,
    private readonly endpoints: () => HttpEndpoints,
    private readonly health: () => Record<string, unknown>,
  ) {}

  async listen(host: string, port: number): Promise<number> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.fail(res, err));
    });
    this.server = server;
    return listenHttp(server, host, port, this.options.maxConnections, () => this.metrics.drop('NDP_ERR_TOO_MANY_CONNECTIONS'));
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Stops taking new connections (shutdown) while answering the ones in progress. */
  stopListening(): void {
    this.server?.close();
    this.server?.closeIdleConnections();
  }

  private send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  private fail(res: ServerResponse, err: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (isNdpError(err)) {
      const status = STATUS_OF[err.code] ?? 400;
      const headers: Record<string, string> = {};
      if (status === 401) headers['WWW-Authenticate'] = 'Bearer';
      if (status === 503) headers['Retry-After'] = '1';
      this.send(res, status, { error: { code: err.code, message: err.message } }, headers);
      return;
    }
    this.send(res, 500, { error: { code: 'NDP_ERR_INTERNAL', message: (err as Error).message ?? String(err) } });
  }

  private authorize(req: IncomingMessage): void {
    if (this.options.token === undefined) return;
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (m === null) throw new NdpError('NDP_ERR_UNAUTHORIZED', 'this server needs Authorization: Bearer TOKEN');
    if (!this.manager.tokenOk(m[1])) throw new NdpError('NDP_ERR_UNAUTHORIZED', 'wrong token');
  }

  private async body(req: IncomingMessage): Promise<unknown> {
    const type = req.headers['content-type'] ?? '';
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) throw new NdpError('NDP_ERR_REQUEST_TOO_LARGE', `request body over ${MAX_REQUEST_BYTES} bytes`);
      chunks.push(chunk);
    }
    if (size === 0) return {};
    if (!/^application\/json\b/i.test(type)) {
      const err = new NdpError('NDP_ERR_BAD_JSON', `Content-Type must be application/json, got '${type}'`);
      throw Object.assign(err, { status: 415 });
    }
    try {
      const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
      return value;
    } catch (err) {
      throw new NdpError('NDP_ERR_BAD_JSON', `request body is not a JSON object: ${(err as Error).message}`);
    }
  }

  private methodNotAllowed(allow: string): never {
    throw Object.assign(new NdpError('NDP_ERR_METHOD_NOT_ALLOWED', `allowed: ${allow}`), { allow });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    try {
      if (path === '/healthz') {
        if (method !== 'GET' && method !== 'HEAD') this.methodNotAllowed('GET');
        const ok = this.manager.isAccepting;
        return this.send(res, ok ? 200 : 503, { ok, sessions: this.manager.size, uptimeS: Math.round((Date.now() - this.started) / 1000), ...this.health() });
      }
      if (path === '/metrics') {
        if (method !== 'GET') this.methodNotAllowed('GET');
        const text = await this.metrics.registry.metrics();
        res.writeHead(200, { 'Content-Type': this.metrics.registry.contentType });
        res.end(text);
        return;
      }
      if (path === '/v1/datasets') {
        if (method !== 'GET') this.methodNotAllowed('GET');
        this.authorize(req);
        return this.send(res, 200, { datasets: this.catalog.list() });
      }
      if (path === '/v1/sessions') {
        if (method === 'GET') {
          this.authorize(req);
          return this.send(res, 200, { sessions: this.manager.list() });
        }
        if (method !== 'POST') this.methodNotAllowed('GET, POST');
        this.authorize(req);
        const params = await this.body(req);
        const session = this.manager.open(params, 'any', true);
        return this.send(
          res,
          201,
          { ...session.acceptFields(), ticket: session.ticket, ticketTtlMs: this.options.ticketTtlMs, endpoints: this.endpoints() },
          { Location: `/v1/sessions/${session.id}` },
        );
      }
      const m = /^\/v1\/sessions\/(\d+)$/.exec(path);
      if (m !== null) {
        const id = Number(m[1]);
        if (method !== 'GET' && method !== 'DELETE') this.methodNotAllowed('GET, DELETE');
        this.authorize(req);
        if (method === 'GET') {
          const info = this.manager.info(id);
          if (info === undefined) throw new NdpError('NDP_ERR_UNKNOWN_SESSION', `no session ${id}`);
          return this.send(res, 200, info);
        }
        const session = this.manager.get(id);
        if (session === undefined) throw new NdpError('NDP_ERR_UNKNOWN_SESSION', `no session ${id}`);
        const cursor = session.cursor();
        session.close('deleted', 'NDP_ERR_SESSION_DELETED');
        return this.send(res, 200, { session: id, cursor });
      }
      throw new NdpError('NDP_ERR_NOT_FOUND', `no such path: ${path}`);
    } catch (err) {
      const extra = err as { status?: number; allow?: string };
      if (isNdpError(err) && extra.status !== undefined) {
        return this.send(res, extra.status, { error: { code: err.code, message: err.message } });
      }
      if (isNdpError(err) && extra.allow !== undefined) {
        return this.send(res, 405, { error: { code: err.code, message: err.message } }, { Allow: extra.allow });
      }
      // A request body we refused may still be arriving: answer, then stop reading it.
      if (isNdpError(err, 'NDP_ERR_REQUEST_TOO_LARGE')) res.once('finish', () => req.destroy());
      throw err;
    }
  }
}
