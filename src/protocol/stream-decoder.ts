/**
 * The stream decoder (NDP.md §8): frames out of a byte stream whose chunk boundaries mean nothing
 * (a file read in pieces, a WebSocket message holding several frames, a TCP-like chunked read).
 *
 * An explicit state machine, as ws's receiver: HEADER (need the 6 header bytes), FRAME (need the
 * LEN + 8 bytes of the frame), RESYNC (looking for the next plausible frame after bad bytes).
 * "Need more bytes" is waiting, never an error. Bad bytes are skipped, counted, and reported once per
 * run as a `skipped` event carrying the code of what started the run:
 *
 * - NDP_ERR_BAD_MAGIC: the byte where a frame should start is not 0xAA;
 * - NDP_ERR_PAYLOAD_TOO_LARGE: a header announces a frame longer than `maxFrameBytes`;
 * - NDP_ERR_TRUNCATED: `end()` found the start of a frame that never completed.
 *
 * Resynchronisation accepts a position only when it starts a whole frame: magic, LEN within the
 * limit, and a CRC-16 that matches (so a stray 0xAA inside garbage is not taken for a frame). While in
 * step (right after a frame, or at the start), a frame whose CRC does not match is reported as a
 * frame with `crcOk: false`: the receiver drops and counts it (`bad_crc`).
 *
 * Memory is bounded: the decoder holds at most `maxFrameBytes` plus the last chunk pushed.
 * A frame that lies inside one pushed chunk is returned as a view into that chunk (no copy); one that
 * spans chunks is copied once. Do not modify a chunk after pushing it while its frames are in use.
 */
import { crc16 } from './crc16.js';
import { NdpError, type NdpErrorCode } from './errors.js';
import type { DecodedFrame } from './frame.js';
import { FRAME_CRC_BYTES, FRAME_HEADER_BYTES, FRAME_OVERHEAD, MAGIC, MAX_PAYLOAD } from './registry.js';

export interface StreamDecoderOptions {
  /** Largest frame accepted, in bytes (LEN + 8), from 8 to 65,543. Defaults to 65,543 (LEN's limit). */
  readonly maxFrameBytes: number;
}

export const STREAM_DECODER_DEFAULTS: Readonly<StreamDecoderOptions> = Object.freeze({ maxFrameBytes: MAX_PAYLOAD + FRAME_OVERHEAD });

export type StreamEvent =
  | { readonly type: 'frame'; readonly frame: DecodedFrame; /** The whole frame's bytes. */ readonly bytes: Uint8Array }
  | { readonly type: 'skipped'; /** Bytes skipped in this run. */ readonly bytes: number; readonly error: NdpError };

export interface StreamDecoderStats {
  framesOk: number;
  framesBadCrc: number;
  bytesSkipped: number;
  /** Skipped runs by the code that started them. */
  skippedRuns: Record<string, number>;
}

const enum State {
  Header,
  Frame,
  Resync,
}

export class StreamDecoder {
  private readonly maxFrameBytes: number;
  private chunks: Uint8Array[] = [];
  private total = 0;
  private state = State.Header;
  /** Bytes of the frame being read (State.Frame). */
  private frameBytes = 0;
  /** Resync: do not scan again before this many bytes are buffered. */
  private resyncNeed = 0;
  /** Resync: the bytes skipped so far in this run and the code that started it. */
  private skipped = 0;
  private skipCode: NdpErrorCode = 'NDP_ERR_BAD_MAGIC';
  private skipDetail = '';
  private readonly counters: StreamDecoderStats = { framesOk: 0, framesBadCrc: 0, bytesSkipped: 0, skippedRuns: {} };

  constructor(options: Readonly<Partial<StreamDecoderOptions>> = {}) {
    const max = options.maxFrameBytes ?? STREAM_DECODER_DEFAULTS.maxFrameBytes;
    if (!Number.isInteger(max) || max < FRAME_OVERHEAD || max > MAX_PAYLOAD + FRAME_OVERHEAD) {
      throw new RangeError(`maxFrameBytes must be an integer ${FRAME_OVERHEAD}..${MAX_PAYLOAD + FRAME_OVERHEAD}, got ${max}`);
    }
    this.maxFrameBytes = max;
  }

  get stats(): StreamDecoderStats {
    return { ...this.counters, skippedRuns: { ...this.counters.skippedRuns } };
  }

  /** Bytes held, waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.total;
  }

  /** Feeds the next piece of the stream; returns the frames and skipped runs it completed, in stream order. */
  push(chunk: Uint8Array): StreamEvent[] {
    const events: StreamEvent[] = [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.total += chunk.length;
    }
    for (;;) {
      if (this.state === State.Header) {
        if (!this.readHeader()) break;
      } else if (this.state === State.Frame) {
        if (this.total < this.frameBytes) break;
        this.readFrame(events);
      } else if (!this.resync(events)) {
        break;
      }
    }
    return events;
  }

  /** The stream ended: whatever is still buffered is a truncated frame or garbage, skipped and reported. The decoder is then ready for a new stream. */
  end(): StreamEvent[] {
    const events: StreamEvent[] = [];
    if (this.state === State.Resync) {
      this.skipped += this.total;
    } else if (this.total > 0) {
      this.startSkipping('NDP_ERR_TRUNCATED', `the stream ended inside a frame (${this.total} of ${this.state === State.Frame ? this.frameBytes : 'at least 6'} bytes)`);
      this.skipped = this.total;
    }
    this.chunks = [];
    this.total = 0;
    if (this.state === State.Resync || this.skipped > 0) this.reportSkipped(events);
    this.state = State.Header;
    return events;
  }

  /** State.Header: true when it moved on (to Frame or Resync), false when it waits. */
  private readHeader(): boolean {
    if (this.total === 0) return false;
    const first = this.chunks[0]![0]!;
    if (first !== MAGIC) {
      this.startSkipping('NDP_ERR_BAD_MAGIC', `0x${first.toString(16).padStart(2, '0')} where a frame should start`);
      return true;
    }
    if (this.total < FRAME_HEADER_BYTES) return false;
    const header = this.peek(FRAME_HEADER_BYTES);
    const size = ((header[4]! << 8) | header[5]!) + FRAME_OVERHEAD;
    if (size > this.maxFrameBytes) {
      // NDP.md §8: an oversize frame is not buffered; its bytes are skipped like garbage.
      this.startSkipping('NDP_ERR_PAYLOAD_TOO_LARGE', `a frame of ${size} bytes exceeds maxFrameBytes ${this.maxFrameBytes}`);
      return true;
    }
    this.frameBytes = size;
    this.state = State.Frame;
    return true;
  }

  private readFrame(events: StreamEvent[]): void {
    const bytes = this.consume(this.frameBytes);
    const len = bytes.length - FRAME_OVERHEAD;
    const crcAt = FRAME_HEADER_BYTES + len;
    const crc = (bytes[crcAt]! << 8) | bytes[crcAt + 1]!;
    const crcOk = crc16(bytes, undefined, 0, crcAt) === crc;
    if (crcOk) this.counters.framesOk++;
    else this.counters.framesBadCrc++;
    events.push({
      type: 'frame',
      bytes,
      frame: { src: bytes[1]!, dst: bytes[2]!, typ: bytes[3]!, len, payload: bytes.subarray(FRAME_HEADER_BYTES, crcAt), crc, crcOk },
    });
    this.state = State.Header;
  }

  private startSkipping(code: NdpErrorCode, detail: string): void {
    this.state = State.Resync;
    this.skipCode = code;
    this.skipDetail = detail;
    this.skipped = 0;
    this.resyncNeed = 0;
  }

  /**
   * State.Resync: looks for the first position after the run's start that begins a whole frame with a
   * matching CRC. Returns true when found (state Header), false when more bytes are needed.
   */
  private resync(events: StreamEvent[]): boolean {
    if (this.total < this.resyncNeed) return false;
    const data = this.flatten();
    // The first byte started the bad run; a plausible frame starts at 1 or later.
    let p = this.skipped === 0 ? 1 : 0;
    for (; p < data.length; p++) {
      if (data[p] !== MAGIC) continue;
      if (data.length - p < FRAME_HEADER_BYTES) break;
      const size = ((data[p + 4]! << 8) | data[p + 5]!) + FRAME_OVERHEAD;
      if (size > this.maxFrameBytes) continue;
      if (data.length - p < size) {
        this.discard(p);
        this.resyncNeed = size;
        return false;
      }
      const crcAt = p + size - FRAME_CRC_BYTES;
      if (crc16(data, undefined, p, crcAt) !== ((data[crcAt]! << 8) | data[crcAt + 1]!)) continue;
      this.discard(p);
      this.reportSkipped(events);
      this.state = State.Header;
      return true;
    }
    this.discard(p);
    this.resyncNeed = this.total + 1;
    return false;
  }

  private discard(n: number): void {
    if (n === 0) return;
    this.skipped += n;
    this.consume(n);
  }

  private reportSkipped(events: StreamEvent[]): void {
    this.counters.bytesSkipped += this.skipped;
    this.counters.skippedRuns[this.skipCode] = (this.counters.skippedRuns[this.skipCode] ?? 0) + 1;
    events.push({ type: 'skipped', bytes: this.skipped, error: new NdpError(this.skipCode, `skipped ${this.skipped} bytes: ${this.skipDetail}`) });
    this.skipped = 0;
  }

  /** The buffered bytes as one array (a view when they sit in one chunk). */
  private flatten(): Uint8Array {
    if (this.chunks.length > 1) {
      const all = new Uint8Array(this.total);
      let at = 0;
      for (const c of this.chunks) {
        all.set(c, at);
        at += c.length;
      }
      this.chunks = [all];
    }
    return this.chunks[0] ?? new Uint8Array(0);
  }

  /** The first `n` buffered bytes without consuming them (n ≤ total). */
  private peek(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    return this.flatten().subarray(0, n);
  }

  /** Removes and returns the first `n` buffered bytes (n ≤ total): a view when they lie in one chunk. */
  private consume(n: number): Uint8Array {
    this.total -= n;
    const first = this.chunks[0]!;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    // Spans chunks: copy once, and drop the used chunks in one splice (byte-at-a-time feeding
    // leaves thousands of one-byte chunks; shifting them one by one would be quadratic).
    const out = new Uint8Array(n);
    let at = 0;
    let used = 0;
    while (at < n) {
      const c = this.chunks[used]!;
      const take = Math.min(c.length, n - at);
      out.set(take === c.length ? c : c.subarray(0, take), at);
      at += take;
      if (take === c.length) used++;
      else this.chunks[used] = c.subarray(take);
    }
    this.chunks.splice(0, used);
    return out;
  }
}

/** Decodes a whole byte stream at once (a file's bytes): `push(bytes)` then `end()`. */
export function decodeStream(bytes: Uint8Array, options: Readonly<Partial<StreamDecoderOptions>> = {}): { events: StreamEvent[]; stats: StreamDecoderStats } {
  const decoder = new StreamDecoder(options);
  const events = [...decoder.push(bytes), ...decoder.end()];
  return { events, stats: decoder.stats };
}
