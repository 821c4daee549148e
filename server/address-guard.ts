/**
 * What the UDP front end remembers about addresses that hold no session (NDP.md §7.3): bytes
 * received from and sent to each unvalidated address and port (the 3× anti-amplification budget of
 * RFC 9000 §8.1), and handshake messages per source IP over a sliding window. Both tables are
 * bounded (`maxEntries`, oldest forgotten first).
 */

export const AMPLIFICATION_FACTOR = 3;
export const HANDSHAKE_WINDOW_MS = 10_000;

interface Budget {
  received: number;
  sent: number;
}

export class AddressGuard {
  private readonly budgets = new Map<string, Budget>();
  private readonly handshakes = new Map<string, number[]>();

  constructor(private readonly maxEntries: number, private readonly maxHandshakes: number) {}

  private budget(peer: string): Budget {
    let entry = this.budgets.get(peer);
    if (entry === undefined) {
      entry = { received: 0, sent: 0 };
      if (this.budgets.size >= this.maxEntries) this.budgets.delete(this.budgets.keys().next().value!);
    } else {
      this.budgets.delete(peer);
    }
    this.budgets.set(peer, entry);
    return entry;
  }

  /** Bytes arrived from an unvalidated peer. */
  received(peer: string, bytes: number): void {
    this.budget(peer).received += bytes;
  }

  /** Spends `bytes` of the peer's budget if they fit under 3× what it sent; false: do not send. */
  trySend(peer: string, bytes: number): boolean {
    const entry = this.budget(peer);
    if (entry.sent + bytes > AMPLIFICATION_FACTOR * entry.received) return false;
    entry.sent += bytes;
    return true;
  }

  /** Bytes sent to and received from a peer so far (tests, metrics). */
  usage(peer: string): { received: number; sent: number } | undefined {
    const entry = this.budgets.get(peer);
    return entry === undefined ? undefined : { ...entry };
  }

  /** Counts a handshake message from `ip`; false when it is over the limit (drop it). */
  allowHandshake(ip: string, nowMs: number = Date.now()): boolean {
    let times = this.handshakes.get(ip);
    if (times === undefined) {
      times = [];
      if (this.handshakes.size >= this.maxEntries) this.handshakes.delete(this.handshakes.keys().next().value!);
      this.handshakes.set(ip, times);
    }
    while (times.length > 0 && nowMs - times[0]! >= HANDSHAKE_WINDOW_MS) times.shift();
    if (times.length >= this.maxHandshakes) return false;
    times.push(nowMs);
    return true;
  }
}
