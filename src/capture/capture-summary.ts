/**
 * The summary `ndp inspect FILE.pcap` prints after the frames: frames by transport, type and SRC,
 * CRC failures, malformed units by error code, control messages by type, and per session: sequence
 * range, gaps, retransmissions, duplicates, and samples reassembled (with the protocol's own
 * Reassembler, on the capture's clock), dropped or left incomplete.
 *
 * Like an endpoint, it uses only frames whose CRC-16 is good for sequences and reassembly: a frame
 * with a bad CRC is counted once, under `crcFailures`, and nothing in it is trusted.
 */
import { codeName, SEGMENT_FLAG } from '../protocol/registry.js';
import { Reassembler } from '../protocol/reassembler.js';
import { readTransportHeader } from '../protocol/transport-header.js';
import type { CaptureRecord } from './capture-frames.js';

export interface SessionSummary {
  readonly session: number;
  /** Sender and receiver of the session's SEGMENT frames as first seen. */
  readonly from: string;
  readonly to: string;
  /** SEGMENT frames with a good CRC. */
  frames: number;
  firstSeq: number;
  lastSeq: number;
  /** Distinct sequence numbers seen. */
  distinctSeqs: number;
  /** Sequence numbers between firstSeq and lastSeq never seen. */
  missingSeqs: number;
  /** The first missing ranges, inclusive (at most 20). */
  gaps: Array<[number, number]>;
  /** Frames flagged RETRANSMIT. */
  retransmissions: number;
  /** Frames repeating a sequence number already seen (retransmitted or duplicated). */
  repeatedSeqs: number;
  samplesReassembled: number;
  samplesDropped: Record<string, number>;
  samplesIncomplete: number;
}

export interface CaptureSummary {
  frames: number;
  byTransport: Record<string, number>;
  byType: Record<string, number>;
  bySrc: Record<string, number>;
  crcFailures: number;
  malformed: Record<string, number>;
  /** SEGMENT / CONTROL payloads that did not decode, by error code (CRC-good frames only). */
  payloadErrors: Record<string, number>;
  control: Record<string, number>;
  sessions: SessionSummary[];
  samplesReassembled: number;
  samplesDropped: Record<string, number>;
  samplesIncomplete: number;
}

const MAX_GAPS_LISTED = 20;

function bump(counts: Record<string, number>, key: string, by = 1): void {
  counts[key] = (counts[key] ?? 0) + by;
}

interface SessionState {
  summary: SessionSummary;
  seen: Set<number>;
}

/** Accumulates records; `finish()` returns the summary. */
export class CaptureSummarizer {
  private readonly summary: CaptureSummary = {
    frames: 0,
    byTransport: {},
    byType: {},
    bySrc: {},
    crcFailures: 0,
    malformed: {},
    payloadErrors: {},
    control: {},
    sessions: [],
    samplesReassembled: 0,
    samplesDropped: {},
    samplesIncomplete: 0,
  };
  private readonly sessions = new Map<number, SessionState>();
  private clockMs = 0;
  private readonly reassembler = new Reassembler({
    now: () => this.clockMs,
    onDrop: (dropped) => {
      bump(this.summary.samplesDropped, dropped.reason);
      const session = dropped.header === undefined ? undefined : this.sessions.get(dropped.header.session);
      if (session !== undefined) bump(session.summary.samplesDropped, dropped.reason);
    },
  });

  add(record: CaptureRecord): void {
    this.clockMs = Math.max(this.clockMs, record.time * 1000);
    if (record.kind === 'malformed') {
      bump(this.summary.malformed, record.code);
      return;
    }
    const { frame } = record;
    this.summary.frames++;
    bump(this.summary.byTransport, record.transport);
    bump(this.summary.byType, codeName('typ', frame.typ));
    bump(this.summary.bySrc, codeName('src', frame.src));
    if (!frame.crcOk) {
      this.summary.crcFailures++;
      return;
    }
    if (record.payloadError !== undefined) bump(this.summary.payloadErrors, record.payloadError.code);
    if (record.control !== undefined) bump(this.summary.control, codeName('control', Number(record.control['t'])));
    const header = record.segment;
    if (header === undefined) return;
    let state = this.sessions.get(header.session);
    if (state === undefined) {
      state = {
        seen: new Set(),
        summary: {
          session: header.session, from: record.from, to: record.to, frames: 0, firstSeq: header.seq, lastSeq: header.seq, distinctSeqs: 0,
          missingSeqs: 0, gaps: [], retransmissions: 0, repeatedSeqs: 0, samplesReassembled: 0, samplesDropped: {}, samplesIncomplete: 0,
        },
      };
      this.sessions.set(header.session, state);
    }
    const s = state.summary;
    s.frames++;
    if (header.flags & SEGMENT_FLAG.RETRANSMIT) s.retransmissions++;
    if (state.seen.has(header.seq)) s.repeatedSeqs++;
    else state.seen.add(header.seq);
    s.firstSeq = Math.min(s.firstSeq, header.seq);
    s.lastSeq = Math.max(s.lastSeq, header.seq);
    const result = this.reassembler.accept(header, readTransportHeader(frame.payload).fragment);
    if (result.status === 'complete') {
      s.samplesReassembled++;
      this.summary.samplesReassembled++;
    }
  }

  finish(): CaptureSummary {
    for (const key of this.reassembler.pendingKeys()) {
      this.summary.samplesIncomplete++;
      const session = this.sessions.get(Number(key.split('/')[0]));
      if (session !== undefined) session.summary.samplesIncomplete++;
    }
    for (const { summary, seen } of this.sessions.values()) {
      summary.distinctSeqs = seen.size;
      summary.missingSeqs = summary.lastSeq - summary.firstSeq + 1 - seen.size;
      const sorted = [...seen].sort((a, b) => a - b);
      for (let i = 1; i < sorted.length && summary.gaps.length < MAX_GAPS_LISTED; i++) {
        if (sorted[i]! > sorted[i - 1]! + 1) summary.gaps.push([sorted[i - 1]! + 1, sorted[i]! - 1]);
      }
      this.summary.sessions.push(summary);
    }
    return this.summary;
  }
}
