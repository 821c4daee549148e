/**
 * `ndp demo`: the protocol layer end to end in one process, no sockets. Synthetic samples are
 * encoded (NDP.md §5), cut into SEGMENT frames (§5.1), damaged on purpose (seeded: frames lost,
 * bits flipped, frames duplicated, reordered, garbage between frames), carried as one byte stream in
 * random-sized reads through the stream decoder (§8) — or one frame per datagram through
 * decodeFrame — and reassembled (§4.3). It prints what arrived and why the rest did not, and exits
 * 1 when the accounting does not add up: every sample delivered intact or counted as dropped with a
 * reason, every byte a frame or counted as skipped.
 */
import { parseArgs } from 'node:util';
import { crc32 } from 'node:zlib';
import { decodeFrame } from '../../protocol/frame.js';
import { isNdpError, dropLabel } from '../../protocol/errors.js';
import { Reassembler, sampleKey } from '../../protocol/reassembler.js';
import { DST, SRC, TYP } from '../../protocol/registry.js';
import { decodeSampleBody, encodeSampleBody } from '../../protocol/sample-body.js';
import { DEFAULT_DATAGRAM, segmentSample } from '../../protocol/segmenter.js';
import { StreamDecoder, type StreamEvent } from '../../protocol/stream-decoder.js';
import { readTransportHeader } from '../../protocol/transport-header.js';

export const usage = `usage: ndp demo [options]

Encode synthetic samples as NDP frames, damage some on purpose (seeded), decode and reassemble
them, and report what was delivered and why the rest was dropped. Exits 1 if the accounting does
not add up (a sample neither delivered nor counted, a delivered sample that differs, a byte unaccounted).

options:
  --samples N      samples to send (default 2000)
  --datagram B     largest frame in bytes (default ${DEFAULT_DATAGRAM}; 49..65543)
  --mode M         stream (frames as one byte stream read in random pieces) or datagram
                   (one frame per read, like UDP) (default stream)
  --lose P         probability that a frame is lost (default 0.01)
  --corrupt P      probability that one bit of a frame is flipped (default 0.01)
  --duplicate P    probability that a frame arrives twice (default 0.01)
  --garbage P      stream mode: probability of junk bytes after a frame (default 0.005)
  --reorder W      frames are shuffled within windows of W (default 8; 1 = in order)
  --seed S         seed of every random choice (default 1)
  --json           print the report as JSON`;

/** xorshift32: small, seeded, reproducible. */
function rng(seed: number): () => number {
  let s = (seed >>> 0) || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

interface DemoOptions {
  samples: number;
  datagram: number;
  mode: 'stream' | 'datagram';
  lose: number;
  corrupt: number;
  duplicate: number;
  garbage: number;
  reorder: number;
  seed: number;
}

export interface DemoReport {
  readonly options: DemoOptions;
  readonly samplesSent: number;
  readonly samplesDelivered: number;
  readonly samplesDropped: Record<string, number>;
  readonly deliveredButDifferent: number;
  readonly frames: Record<string, number>;
  readonly bytes: Record<string, number>;
  readonly problems: string[];
}

function number(value: string | undefined, fallback: number, name: string, min: number, max: number): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isFinite(n) || n < min || n > max) throw new RangeError(`--${name} must be a number ${min}..${max}, got ${value}`);
  return n;
}

/** Runs the demo and returns its report (tests call this directly). */
export function runDemo(options: DemoOptions): DemoReport {
  const random = rng(options.seed);
  const originals: Int32Array[] = [];
  const frames: Uint8Array[] = [];
  let seq = 0;
  for (let position = 0; position < options.samples; position++) {
    const n = 16 + Math.floor(random() * 1500);
    const tokens = new Int32Array(n);
    for (let i = 0; i < n; i++) tokens[i] = Math.floor(random() * 151_000);
    const lossMask = new Uint8Array(n).fill(1);
    lossMask.fill(0, 0, Math.floor(n / 4)); // a prompt part not trained on
    originals.push(tokens);
    const src = position % 2 === 0 ? SRC.TEXT_CORPUS : SRC.CODE_REPO;
    const seg = segmentSample(
      { body: encodeSampleBody({ tokens, lossMask }), src, dst: DST.EMBEDDING, session: 1, seq, epoch: 0, position, sample: position, source: position % 2 },
      { datagram: options.datagram },
    );
    seq = seg.nextSeq;
    frames.push(...seg.frames);
  }

  // The network: lose, duplicate, corrupt, reorder within windows.
  const injected = { sent: frames.length, lost: 0, duplicated: 0, corrupted: 0 };
  const wire: Uint8Array[] = [];
  for (const frame of frames) {
    if (random() < options.lose) {
      injected.lost++;
      continue;
    }
    const copies = random() < options.duplicate ? 2 : 1;
    if (copies === 2) injected.duplicated++;
    for (let c = 0; c < copies; c++) {
      let bytes = frame;
      if (random() < options.corrupt) {
        bytes = Uint8Array.from(frame);
        const bit = Math.floor(random() * bytes.length * 8);
        bytes[bit >> 3]! ^= 0x80 >> (bit & 7);
        injected.corrupted++;
      }
      wire.push(bytes);
    }
  }
  for (let w = 0; w < wire.length; w += options.reorder) {
    const end = Math.min(wire.length, w + options.reorder);
    for (let i = end - 1; i > w; i--) {
      const j = w + Math.floor(random() * (i - w + 1));
      [wire[i], wire[j]] = [wire[j]!, wire[i]!];
    }
  }

  // The receiver.
  const reassembler = new Reassembler();
  const dropped = { bad_crc: 0, not_segment: 0 } as Record<string, number>;
  const count = (label: string): void => {
    dropped[label] = (dropped[label] ?? 0) + 1;
  };
  const undecodable: Record<string, number> = {};
  const delivered = new Map<number, Uint8Array>();
  let framesDecoded = 0;
  const receive = (frame: { typ: number; crcOk: boolean; payload: Uint8Array }): void => {
    framesDecoded++;
    if (!frame.crcOk) return count('bad_crc');
    if (frame.typ !== TYP.SEGMENT) return count('not_segment');
    let piece;
    try {
      piece = readTransportHeader(frame.payload);
    } catch (err) {
      if (isNdpError(err)) return count(dropLabel(err.code));
      throw err;
    }
    const result = reassembler.accept(piece.header, piece.fragment);
    if (result.status === 'complete') delivered.set(result.header.position, result.body);
  };

  const bytes = { streamed: 0, inFrames: 0, skipped: 0, garbage: 0 };
  if (options.mode === 'stream') {
    const parts: Uint8Array[] = [];
    for (const f of wire) {
      parts.push(f);
      if (random() < options.garbage) {
        const junk = new Uint8Array(1 + Math.floor(random() * 40)).map(() => Math.floor(random() * 256));
        bytes.garbage += junk.length;
        parts.push(junk);
      }
    }
    const stream = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) {
      stream.set(p, at);
      at += p.length;
    }
    bytes.streamed = stream.length;
    const decoder = new StreamDecoder();
    const handle = (events: StreamEvent[]): void => {
      for (const e of events) {
        if (e.type === 'frame') {
          bytes.inFrames += e.bytes.length;
          receive(e.frame);
        } else {
          bytes.skipped += e.bytes;
        }
      }
    };
    for (let i = 0; i < stream.length; ) {
      const n = 1 + Math.floor(random() * 4096);
      handle(decoder.push(stream.subarray(i, i + n)));
      i += n;
    }
    handle(decoder.end());
  } else {
    for (const datagram of wire) {
      bytes.streamed += datagram.length;
      try {
        receive(decodeFrame(datagram));
        bytes.inFrames += datagram.length;
      } catch (err) {
        if (!isNdpError(err)) throw err;
        const label = `undecodable_${dropLabel(err.code)}`;
        undecodable[label] = (undecodable[label] ?? 0) + 1;
        bytes.skipped += datagram.length;
      }
    }
  }

  // End of stream: what is still incomplete is lost; samples never heard of are lost too.
  reassembler.dropAll('incomplete_at_end');
  for (let position = 0; position < options.samples; position++) reassembler.drop(sampleKey({ session: 1, epoch: 0, position }), 'never_arrived');

  let deliveredButDifferent = 0;
  for (const [position, body] of delivered) {
    const { tokens } = decodeSampleBody(body);
    const original = originals[position]!;
    if (tokens.length !== original.length || crc32(new Uint8Array(tokens.buffer)) !== crc32(new Uint8Array(original.buffer))) deliveredButDifferent++;
  }

  const stats = reassembler.stats;
  const samplesDropped = stats.samplesDropped;
  const droppedTotal = Object.values(samplesDropped).reduce((s, n) => s + n, 0);
  const problems: string[] = [];
  if (delivered.size + droppedTotal !== options.samples) problems.push(`${options.samples} samples sent, ${delivered.size} delivered + ${droppedTotal} dropped`);
  if (stats.samplesSeen !== options.samples) problems.push(`the reassembler heard of ${stats.samplesSeen} samples, ${options.samples} were sent`);
  if (deliveredButDifferent > 0) problems.push(`${deliveredButDifferent} delivered samples differ from what was sent`);
  if (bytes.inFrames + bytes.skipped !== bytes.streamed) problems.push(`${bytes.streamed} bytes arrived, ${bytes.inFrames} in frames + ${bytes.skipped} skipped`);
  const framesOut = framesDecoded - Object.values(dropped).reduce((s, n) => s + n, 0);
  if (framesOut !== stats.fragmentsReceived) problems.push(`${framesOut} frames passed the checks, the reassembler received ${stats.fragmentsReceived}`);

  return {
    options,
    samplesSent: options.samples,
    samplesDelivered: delivered.size,
    samplesDropped,
    deliveredButDifferent,
    frames: {
      sent: injected.sent,
      injectedLost: injected.lost,
      injectedDuplicated: injected.duplicated,
      injectedCorrupted: injected.corrupted,
      decoded: framesDecoded,
      ...undecodable,
      ...Object.fromEntries(Object.entries(dropped).map(([k, v]) => [`dropped_${k}`, v])),
      reassemblerUsed: stats.fragmentsUsed,
      reassemblerDuplicate: stats.fragmentsDuplicate,
      reassemblerLate: stats.fragmentsLate,
      reassemblerRejected: stats.fragmentsRejected,
    },
    bytes,
    problems,
  };
}

function print(report: DemoReport): string {
  const o = report.options;
  const lines = [
    `ndp demo: ${o.samples} samples, ${o.mode} mode, datagram ${o.datagram} B, seed ${o.seed}`,
    `  faults injected: lose ${o.lose}, corrupt ${o.corrupt}, duplicate ${o.duplicate}, reorder window ${o.reorder}${o.mode === 'stream' ? `, garbage ${o.garbage}` : ''}`,
    '',
    `samples: ${report.samplesSent} sent, ${report.samplesDelivered} delivered intact, ${Object.values(report.samplesDropped).reduce((s, n) => s + n, 0)} dropped`,
    ...Object.entries(report.samplesDropped)
      .sort(([, x], [, y]) => y - x)
      .map(([reason, n]) => `  dropped ${reason.padEnd(20)} ${n}`),
    'frames:',
    ...Object.entries(report.frames).map(([k, v]) => `  ${k.padEnd(28)} ${v}`),
    'bytes:',
    ...Object.entries(report.bytes).map(([k, v]) => `  ${k.padEnd(28)} ${v}`),
    '',
    report.problems.length === 0 ? 'accounting: OK (every sample delivered or dropped with a reason; every byte a frame or skipped)' : `accounting: FAILED\n  ${report.problems.join('\n  ')}`,
  ];
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      samples: { type: 'string' },
      datagram: { type: 'string' },
      mode: { type: 'string' },
      lose: { type: 'string' },
      corrupt: { type: 'string' },
      duplicate: { type: 'string' },
      garbage: { type: 'string' },
      reorder: { type: 'string' },
      seed: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const mode = values.mode ?? 'stream';
  if (mode !== 'stream' && mode !== 'datagram') throw new RangeError(`--mode must be stream or datagram, got ${mode}`);
  const options: DemoOptions = {
    samples: Math.floor(number(values.samples, 2000, 'samples', 1, 10_000_000)),
    datagram: Math.floor(number(values.datagram, DEFAULT_DATAGRAM, 'datagram', 49, 65_543)),
    mode,
    lose: number(values.lose, 0.01, 'lose', 0, 1),
    corrupt: number(values.corrupt, 0.01, 'corrupt', 0, 1),
    duplicate: number(values.duplicate, 0.01, 'duplicate', 0, 1),
    garbage: number(values.garbage, 0.005, 'garbage', 0, 1),
    reorder: Math.floor(number(values.reorder, 8, 'reorder', 1, 1_000_000)),
    seed: Math.floor(number(values.seed, 1, 'seed', 0, 2 ** 32 - 1)),
  };
  const report = runDemo(options);
  process.stdout.write((values.json === true ? JSON.stringify(report, null, 2) : print(report)) + '\n');
  return report.problems.length === 0 ? 0 : 1;
}
