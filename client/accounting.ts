/**
 * The client's exact accounting: every frame received and every sample the stream covered has one
 * recorded fate. Two ledgers, each with an invariant the tests check:
 * - frames: `received = control + used + Σ dropped[reason]` (a frame is a control message, a part of
 *   a sample that completed, or dropped with a reason);
 * - samples: `expected = delivered + Σ dropped[reason] + pending` (a sample the stream covered, i.e.
 *   position of the planned stream, is delivered, dropped with a reason, or still to come; the
 *   equality is checked once the stream has ended, when nothing is pending).
 * The reason labels are the metrics labels too.
 */

/** Why a frame was dropped. */
export const FRAME_DROP_REASONS = [
  /** CRC-16 mismatch (the network or an injector broke it). */
  'crc',
  /** CRC-Drop augmentation dropped a good frame. */
  'augment',
  /** A sequence number already received (a retransmission that crossed the original, or a replay). */
  'duplicate',
  /** Not for this session: another session id, a datagram from another address, a frame before ACCEPT. */
  'foreign',
  /** Not a frame, or a frame whose SEGMENT header or control payload cannot be parsed. */
  'malformed',
  /** A DST with no handler installed. */
  'unrouted',
  /** A seq the client had already given up (GONE, or a lossy gap) that arrived after all. */
  'late',
  /** A seq far beyond the credit the client granted: no honest server sends it. */
  'out_of_window',
  /** A fragment the reassembler refused (contradicts itself or its sample, over maxSampleBytes). */
  'rejected',
] as const;
export type FrameDropReason = (typeof FRAME_DROP_REASONS)[number];

/** Why a sample was dropped. */
export const SAMPLE_DROP_REASONS = [
  /** A fragment failed its CRC and was not repaired. */
  'crc',
  /** A fragment was dropped by CRC-Drop augmentation and not repaired. */
  'augment',
  /** Fragments never arrived and the client gave them up (a `lossy` session). */
  'lost',
  /** Fragments the server said it will never send (GONE: evicted from its retransmit buffer, or routed away). */
  'gone',
  /** Reassembly did not complete within the timeout. */
  'timeout',
  /** The reassembled body's CRC-32 did not match. */
  'body_crc',
  /** The reassembled body is not a valid sample body. */
  'bad_body',
  /** Longer than a batch row and the truncation policy is `drop`. */
  'too_long',
  /** Reassembly memory or count limits evicted it (the reassembler's evicted_count / evicted_memory). */
  'overflow',
  /** The fragments contradicted each other, or the sample exceeded maxSampleBytes. */
  'rejected',
  /** A routing rule sent (some of) its fragments to another DST (NDP.md §7.11). */
  'unrouted',
] as const;
export type SampleDropReason = (typeof SAMPLE_DROP_REASONS)[number];

export interface AccountingSnapshot {
  readonly frames: {
    readonly received: number;
    readonly control: number;
    readonly used: number;
    readonly dropped: Readonly<Record<FrameDropReason, number>>;
    /** Sequence numbers noticed missing (gaps), and how many of them a retransmission filled. */
    readonly missing: number;
    readonly repaired: number;
    readonly nacked: number;
  };
  readonly samples: {
    readonly expected: number;
    readonly delivered: number;
    readonly pending: number;
    readonly dropped: Readonly<Record<SampleDropReason, number>>;
  };
  readonly bytes: { readonly received: number; readonly tokens: number };
  readonly streamEnded: boolean;
}

function zeroes<K extends string>(keys: readonly K[]): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of keys) out[k] = 0;
  return out;
}

export class Accounting {
  framesReceived = 0;
  framesControl = 0;
  framesUsed = 0;
  readonly framesDropped: Record<FrameDropReason, number> = zeroes(FRAME_DROP_REASONS);
  framesMissing = 0;
  framesRepaired = 0;
  framesNacked = 0;
  samplesExpected = 0;
  samplesDelivered = 0;
  samplesPending = 0;
  readonly samplesDropped: Record<SampleDropReason, number> = zeroes(SAMPLE_DROP_REASONS);
  bytesReceived = 0;
  tokensDelivered = 0;
  /** Set when the stream ended (END reached, every sample resolved): the sample ledger must balance. */
  streamEnded = false;

  dropFrame(reason: FrameDropReason, count = 1): void {
    this.framesDropped[reason] += count;
  }

  dropSample(reason: SampleDropReason): void {
    this.samplesDropped[reason]++;
  }

  get framesDroppedTotal(): number {
    return sum(this.framesDropped);
  }

  get samplesDroppedTotal(): number {
    return sum(this.samplesDropped);
  }

  /** Undefined when both ledgers balance, else a sentence saying which does not. */
  imbalance(): string | undefined {
    const frames = this.framesControl + this.framesUsed + this.framesDroppedTotal;
    if (frames !== this.framesReceived) return `frames: received ${this.framesReceived} ≠ control ${this.framesControl} + used ${this.framesUsed} + dropped ${this.framesDroppedTotal}`;
    const samples = this.samplesDelivered + this.samplesDroppedTotal + this.samplesPending;
    if (this.streamEnded && samples !== this.samplesExpected) return `samples: expected ${this.samplesExpected} ≠ delivered ${this.samplesDelivered} + dropped ${this.samplesDroppedTotal} + pending ${this.samplesPending}`;
    return undefined;
  }

  snapshot(): AccountingSnapshot {
    return {
      frames: {
        received: this.framesReceived,
        control: this.framesControl,
        used: this.framesUsed,
        dropped: { ...this.framesDropped },
        missing: this.framesMissing,
        repaired: this.framesRepaired,
        nacked: this.framesNacked,
      },
      samples: { expected: this.samplesExpected, delivered: this.samplesDelivered, pending: this.samplesPending, dropped: { ...this.samplesDropped } },
      bytes: { received: this.bytesReceived, tokens: this.tokensDelivered },
      streamEnded: this.streamEnded,
    };
  }
}

function sum(record: Readonly<Record<string, number>>): number {
  let total = 0;
  for (const v of Object.values(record)) total += v;
  return total;
}
