/**
 * Client messages about an open session (NDP.md §6.1: CREDIT, NACK, HEARTBEAT, STATS, BYE), the same
 * for both transports: fields checked, the session found and its peer matched, then handed over.
 * Anything else is dropped and counted under its error label.
 */
import { CONTROL } from '../src/protocol/registry.js';
import type { ServerMetrics } from './metrics.js';
import type { SessionManager } from './session-manager.js';

function isUint(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}

function parseRanges(value: unknown): Array<[number, number]> | undefined {
  if (!Array.isArray(value)) return undefined;
  const out: Array<[number, number]> = [];
  for (const range of value) {
    if (!Array.isArray(range) || range.length !== 2 || !isUint(range[0]) || !isUint(range[1]) || range[0] > range[1]) return undefined;
    out.push([range[0], range[1]]);
  }
  return out;
}

/** NDP.md §6.1 STATS `counters: {name: number}`: a flat map of finite numbers (it is shown as is over HTTP). */
function isCounterMap(value: unknown): value is Record<string, number> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) return false;
  return Object.values(value).every((v) => typeof v === 'number' && Number.isFinite(v));
}

/** Handles one decoded control message from `peer` that is not a handshake message. */
export function dispatchSessionMessage(manager: SessionManager, metrics: ServerMetrics, message: Record<string, unknown> & { t: number }, peer: string): void {
  const t = message.t;
  if (t !== CONTROL.CREDIT && t !== CONTROL.NACK && t !== CONTROL.HEARTBEAT && t !== CONTROL.STATS && t !== CONTROL.BYE) {
    metrics.drop('NDP_ERR_UNEXPECTED_FRAME');
    return;
  }
  if (!isUint(message.session)) {
    metrics.drop('NDP_ERR_BAD_CONTROL');
    return;
  }
  const session = manager.get(message.session);
  if (session === undefined) {
    // A client's last CREDIT or BYE often crosses the server's BYE complete: count it apart from
    // messages about sessions that never existed.
    metrics.drop(manager.info(message.session) !== undefined ? 'NDP_ERR_SESSION_CLOSED' : 'NDP_ERR_UNKNOWN_SESSION');
    return;
  }
  if (session.link === undefined || session.link.peer !== peer) {
    metrics.drop('NDP_ERR_FOREIGN');
    return;
  }
  switch (t) {
    case CONTROL.CREDIT:
      if (!isUint(message.ack) || !isUint(message.window)) return metrics.drop('NDP_ERR_BAD_CONTROL');
      return session.onCredit(message.ack, message.window);
    case CONTROL.NACK: {
      const ranges = parseRanges(message.ranges);
      if (ranges === undefined) return metrics.drop('NDP_ERR_BAD_CONTROL');
      return session.onNack(ranges);
    }
    case CONTROL.HEARTBEAT:
      return session.touch();
    case CONTROL.STATS:
      if (!isCounterMap(message.counters)) return metrics.drop('NDP_ERR_BAD_CONTROL');
      return session.onStats(message.counters);
    default:
      return session.onBye();
  }
}
