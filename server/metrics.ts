/**
 * The server's Prometheus metrics (NDP.md §7.14), in a registry of its own so several servers in one
 * process (tests, benchmarks) do not share counters. Drop reasons use the error module's labels
 * (`dropLabel`), so a test, a log line and a metric name the same thing.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { dropLabel, type NdpErrorCode } from '../src/protocol/errors.js';

export type TransportName = 'udp' | 'ws';
export type FrameKind = 'data' | 'retransmit' | 'control';

export class ServerMetrics {
  readonly registry = new Registry();
  /**
   * Per-frame tallies are plain numbers, copied into prom-client only when /metrics is scraped:
   * a labelled `inc()` per frame cost more than the frame's own send (bench/server-throughput.ts).
   */
  private readonly frameTally = { udp: { data: 0, retransmit: 0, control: 0 }, ws: { data: 0, retransmit: 0, control: 0 } };
  private readonly byteTally = { udp: 0, ws: 0 };
  private readonly routedTally = { deliver: 0, drop: 0, capture: 0 };
  readonly framesSent = new Counter({
    name: 'ndp_frames_sent_total',
    help: 'frames sent, by transport and kind',
    labelNames: ['transport', 'kind'] as const,
    registers: [this.registry],
    collect: () => {
      this.framesSent.reset();
      for (const transport of ['udp', 'ws'] as const) for (const kind of ['data', 'retransmit', 'control'] as const) this.framesSent.inc({ transport, kind }, this.frameTally[transport][kind]);
    },
  });
  readonly bytesSent = new Counter({
    name: 'ndp_bytes_sent_total',
    help: 'frame bytes sent, by transport',
    labelNames: ['transport'] as const,
    registers: [this.registry],
    collect: () => {
      this.bytesSent.reset();
      for (const transport of ['udp', 'ws'] as const) this.bytesSent.inc({ transport }, this.byteTally[transport]);
    },
  });
  readonly retransmits = new Counter({ name: 'ndp_retransmits_total', help: 'frames retransmitted after a NACK', registers: [this.registry] });
  readonly drops = new Counter({ name: 'ndp_drops_total', help: 'inputs dropped, by reason (error code label)', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly sessions = new Gauge({ name: 'ndp_sessions', help: 'sessions held, by state', labelNames: ['state'] as const, registers: [this.registry] });
  readonly sessionsOpened = new Counter({ name: 'ndp_sessions_opened_total', help: 'sessions opened', registers: [this.registry] });
  readonly creditStalls = new Counter({ name: 'ndp_credit_stalls_total', help: 'times a session had frames ready but no credit', registers: [this.registry] });
  readonly injected = new Counter({ name: 'ndp_injected_total', help: 'faults injected, by kind', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly routed = new Counter({
    name: 'ndp_routed_total',
    help: 'data frames by routing outcome',
    labelNames: ['action'] as const,
    registers: [this.registry],
    collect: () => {
      this.routed.reset();
      for (const action of ['deliver', 'drop', 'capture'] as const) this.routed.inc({ action }, this.routedTally[action]);
    },
  });
  readonly routeMatches = new Counter({ name: 'ndp_route_matches_total', help: 'frames matched by count rules', labelNames: ['rule'] as const, registers: [this.registry] });
  readonly gone = new Counter({ name: 'ndp_gone_total', help: 'seqs reported GONE, by reason', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly datagramsReceived = new Counter({ name: 'ndp_datagrams_received_total', help: 'UDP datagrams and WebSocket messages received', labelNames: ['transport'] as const, registers: [this.registry] });
  readonly handshakes = new Counter({ name: 'ndp_handshakes_total', help: 'handshake messages by result', labelNames: ['result'] as const, registers: [this.registry] });

  /** Counts one dropped input under its error code's label; also kept in a plain map for /healthz and tests. */
  readonly dropCounts = new Map<string, number>();
  drop(code: NdpErrorCode, n = 1): void {
    const reason = dropLabel(code);
    this.drops.inc({ reason }, n);
    this.dropCounts.set(reason, (this.dropCounts.get(reason) ?? 0) + n);
  }

  sent(transport: TransportName, kind: FrameKind, bytes: number, frames = 1): void {
    this.frameTally[transport][kind] += frames;
    this.byteTally[transport] += bytes;
  }

  /** Counts data frames by routing outcome. */
  route(action: 'deliver' | 'drop' | 'capture', frames = 1): void {
    this.routedTally[action] += frames;
  }
}
