/**
 * The data server (NDP.md §7): a catalog of datasets, one session engine, and the front ends that
 * drive it — UDP, WebSocket and the HTTP control plane. `start()` binds them (port 0 = any free
 * port) and reports the ports; `shutdown()` is SIGTERM's path: stop accepting, BYE with its cursor
 * to every client, flush, close.
 */
import type { SampleSource } from '../src/dataset/sample.js';
import { Catalog } from './catalog.js';
import { HttpApi } from './http-api.js';
import { ServerMetrics } from './metrics.js';
import { resolveServerOptions, type ServerOptions } from './options.js';
import { SessionManager } from './session-manager.js';
import { UdpFrontEnd } from './udp-transport.js';
import { WS_PATH, WsFrontEnd } from './ws-transport.js';

export interface ListeningPorts {
  readonly udp: number | null;
  readonly ws: number | null;
  readonly http: number | null;
}

export class DataServer {
  readonly options: ServerOptions;
  readonly catalog: Catalog;
  readonly metrics = new ServerMetrics();
  readonly manager: SessionManager;
  readonly udp: UdpFrontEnd | undefined;
  readonly ws: WsFrontEnd | undefined;
  readonly http: HttpApi | undefined;
  private ports: ListeningPorts = { udp: null, ws: null, http: null };

  constructor(sources: readonly SampleSource[], options: Readonly<Partial<ServerOptions>> = {}, captureSink?: (frame: Uint8Array) => void) {
    this.options = resolveServerOptions(options);
    this.catalog = new Catalog(sources);
    this.manager = new SessionManager(this.catalog, this.options, this.metrics, captureSink);
    const o = this.options;
    this.udp = o.udpPort === null ? undefined : new UdpFrontEnd(this.manager, this.metrics, o, o.tap);
    this.ws = o.wsPort === null ? undefined : new WsFrontEnd(this.manager, this.metrics, o, o.tap);
    this.http = o.httpPort === null ? undefined : new HttpApi(this.catalog, this.manager, this.metrics, o, () => this.endpoints(), () => this.health());
  }

  /** Binds every listener; if one cannot bind (a busy port), closes the others and throws. */
  async start(): Promise<ListeningPorts> {
    const o = this.options;
    try {
      const udp = this.udp === undefined ? null : await this.udp.listen(o.host, o.udpPort!);
      const ws = this.ws === undefined ? null : await this.ws.listen(o.host, o.wsPort!);
      const http = this.http === undefined ? null : await this.http.listen(o.host, o.httpPort!);
      this.ports = { udp, ws, http };
      return this.ports;
    } catch (err) {
      // Listeners already bound would keep the process alive after a failed start.
      await this.close();
      throw err;
    }
  }

  /** How clients reach the transports (the `POST /v1/sessions` reply's `endpoints`). */
  endpoints(): { udp?: string; ws?: string } {
    const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
    const out: { udp?: string; ws?: string } = {};
    if (this.ports.udp !== null) out.udp = `udp://${host}:${this.ports.udp}`;
    if (this.ports.ws !== null) out.ws = `${this.options.tls === undefined ? 'ws' : 'wss'}://${host}:${this.ports.ws}${WS_PATH}`;
    return out;
  }

  private health(): Record<string, unknown> {
    return { recvBufferBytes: this.udp?.recvBufferBytes ?? null, drops: Object.fromEntries(this.metrics.dropCounts) };
  }

  /**
   * Graceful stop (SIGTERM, NDP.md §7.9): refuse new sessions, send BYE `shutdown` with the cursor to
   * every session, let WebSocket close frames and the repeated UDP BYEs go out, then close.
   */
  async shutdown(): Promise<void> {
    this.http?.stopListening();
    this.manager.shutdown();
    // The UDP BYE is repeated at 20 and 40 ms; WebSocket peers answer the close frame.
    await Promise.all([new Promise((r) => setTimeout(r, 60)), this.ws?.drain(2000)]);
    await this.close();
  }

  /** Closes every listener and the datasets now. */
  async close(): Promise<void> {
    this.manager.shutdown();
    await Promise.all([this.udp?.close(), this.ws?.close(), this.http?.close()]);
    await this.catalog.close();
  }
}
