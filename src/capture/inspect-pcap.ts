/**
 * `ndp inspect FILE.pcap|FILE.pcapng`: every NDP frame a capture holds, both transports, then a
 * summary (capture-summary.ts). `ndp inspect` dispatches capture files here.
 */
import { parseArgs } from 'node:util';
import { codeName, SEGMENT_FLAG } from '../protocol/registry.js';
import { captureFrames, type CaptureRecord, type FrameRecord } from './capture-frames.js';
import type { CaptureInfo } from './capture-reader.js';
import { CaptureSummarizer, type CaptureSummary } from './capture-summary.js';

export const usage = `usage: ndp inspect FILE.pcap|FILE.pcapng [options]

Lists every NDP frame in a packet capture (UDP datagrams and WebSocket messages): time, addresses,
SRC/DST/TYP, LEN, session, sequence, sample, fragment, CRC verdict, control message; then a summary
(frames by type, CRC failures, sequence gaps, retransmissions, samples reassembled).

options:
  --json            one JSON document {file, format, packets, frames: [...], summary} instead of text
  --session ID      only frames of session ID (SEGMENT header or control message 'session')
  --bad-crc         only frames whose CRC-16 does not match
  --summary         the summary only, no frame list
  --udp-port N      treat every datagram to/from port N as NDP (repeatable; default 7400); other
                    datagrams count when they start with the magic and their length matches LEN`;

const FLAG_NAMES: Array<[number, string]> = [
  [SEGMENT_FLAG.RETRANSMIT, 'RETRANSMIT'],
  [SEGMENT_FLAG.LAST_FRAGMENT, 'LAST'],
  [SEGMENT_FLAG.EVAL, 'EVAL'],
];

/** msgpack values made printable: byte arrays as hex, big integers as text. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

function recordJson(record: CaptureRecord): Record<string, unknown> {
  const where = { packet: record.packet, time: record.time, transport: record.transport, from: record.from, to: record.to };
  if (record.kind === 'malformed') return { ...where, malformed: { code: record.code, message: record.message } };
  const { frame } = record;
  return {
    ...where,
    index: record.index,
    src: codeName('src', frame.src),
    dst: codeName('dst', frame.dst),
    typ: codeName('typ', frame.typ),
    len: frame.len,
    crc: frame.crc,
    crcOk: frame.crcOk,
    ...(record.segment === undefined ? {} : { segment: record.segment }),
    ...(record.control === undefined ? {} : { control: { ...(plain(record.control) as object), type: codeName('control', Number(record.control['t'])) } }),
    ...(record.payloadError === undefined ? {} : { payloadError: record.payloadError }),
  };
}

function timeText(seconds: number): string {
  const date = new Date(Math.floor(seconds * 1000));
  const micros = Math.round((seconds % 1) * 1e6) % 1e6;
  return `${date.toISOString().slice(11, 19)}.${String(micros).padStart(6, '0')}`;
}

function detailText(record: FrameRecord): string {
  if (record.segment !== undefined) {
    const h = record.segment;
    const flags = FLAG_NAMES.filter(([bit]) => h.flags & bit).map(([, name]) => name);
    return `session=${h.session} seq=${h.seq} epoch=${h.epoch} pos=${h.position} sample=${h.sample} frag=${h.fragIndex}/${h.fragCount}${flags.length > 0 ? ` [${flags.join(',')}]` : ''}`;
  }
  if (record.control !== undefined) {
    const { t, ...rest } = plain(record.control) as Record<string, unknown>;
    return `${codeName('control', Number(t))} ${JSON.stringify(rest)}`;
  }
  if (record.payloadError !== undefined) return `${record.payloadError.code}: ${record.payloadError.message}`;
  return '';
}

function recordText(record: CaptureRecord): string {
  const head = `#${record.packet} ${timeText(record.time)} ${record.transport.padEnd(3)} ${record.from} → ${record.to}`;
  if (record.kind === 'malformed') return `${head}  MALFORMED ${record.code}: ${record.message}`;
  const f = record.frame;
  const crc = f.crcOk ? 'ok' : `BAD(0x${f.crc.toString(16).padStart(4, '0')})`;
  return `${head}  ${codeName('src', f.src)}→${codeName('dst', f.dst)} ${codeName('typ', f.typ)} len=${f.len} crc=${crc}  ${detailText(record)}`;
}

function counts(map: Record<string, number>): string {
  const entries = Object.entries(map);
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k}=${v}`).join(' ');
}

function summaryText(summary: CaptureSummary, info: CaptureInfo): string {
  const lines = [
    `summary: ${summary.frames} NDP frames in ${info.packets} packets (${info.format}${info.truncatedTail ? ', file ends inside a record' : ''}` +
      `${info.ipFragments ? `, ${info.ipFragments} IP fragments not reassembled` : ''})`,
    `  by transport: ${counts(summary.byTransport)}`,
    `  by type:      ${counts(summary.byType)}`,
    `  by SRC:       ${counts(summary.bySrc)}`,
    `  CRC failures: ${summary.crcFailures}`,
    `  malformed:    ${counts(summary.malformed)}`,
    `  payload errors: ${counts(summary.payloadErrors)}`,
    `  control:      ${counts(summary.control)}`,
    `  samples: reassembled=${summary.samplesReassembled} dropped=${counts(summary.samplesDropped)} incomplete=${summary.samplesIncomplete}`,
  ];
  for (const s of summary.sessions) {
    const gaps = s.gaps.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
    lines.push(
      `  session ${s.session} (${s.from} → ${s.to}): frames=${s.frames} seq=${s.firstSeq}..${s.lastSeq} missing=${s.missingSeqs}${gaps ? ` [${gaps}]` : ''} ` +
        `retransmissions=${s.retransmissions} repeated=${s.repeatedSeqs} samples=${s.samplesReassembled} dropped=${counts(s.samplesDropped)} incomplete=${s.samplesIncomplete}`,
    );
  }
  return lines.join('\n');
}

function sessionOf(record: CaptureRecord): number | undefined {
  if (record.kind !== 'frame') return undefined;
  if (record.segment !== undefined) return record.segment.session;
  const session = record.control?.['session'];
  return typeof session === 'number' ? session : undefined;
}

/** Runs the command; returns the exit code (0, 1 on an unreadable file, 2 on bad usage). */
export async function run(argv: string[]): Promise<number> {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean', default: false },
        session: { type: 'string' },
        'bad-crc': { type: 'boolean', default: false },
        summary: { type: 'boolean', default: false },
        'udp-port': { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`ndp inspect: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const file = positionals[0];
  const session = values.session === undefined ? undefined : Number(values.session);
  const ports = (values['udp-port'] ?? []).map(Number);
  const problem =
    file === undefined || positionals.length > 1
      ? 'name exactly one capture file'
      : session !== undefined && !(Number.isInteger(session) && session >= 0 && session <= 0xffffffff)
        ? `--session must be a session id (0..4294967295), got '${values.session}'`
        : ports.some((p) => !(Number.isInteger(p) && p > 0 && p < 65536))
          ? `--udp-port must be a port 1..65535, got '${(values['udp-port'] ?? []).join(', ')}'`
          : undefined;
  if (problem !== undefined || file === undefined) {
    process.stderr.write(`ndp inspect: ${problem}\n${usage}\n`);
    return 2;
  }
  const info: CaptureInfo = { format: 'pcap', packets: 0, truncatedTail: false };
  const summarizer = new CaptureSummarizer();
  const out = process.stdout;
  let first = true;
  const records = captureFrames(file, ports.length > 0 ? { udpPorts: ports } : {}, info);
  try {
    // The first read opens the file and checks its format, before anything is printed.
    let next = records.next();
    if (values.json) out.write(`{"file":${JSON.stringify(file)},"frames":[`);
    for (; next.done !== true; next = records.next()) {
      const record = next.value;
      if (session !== undefined && sessionOf(record) !== session) continue;
      if (values['bad-crc'] && !(record.kind === 'frame' && !record.frame.crcOk)) continue;
      summarizer.add(record);
      if (values.summary) continue;
      if (values.json) {
        out.write(`${first ? '' : ','}\n${JSON.stringify(recordJson(record))}`);
        first = false;
      } else {
        out.write(`${recordText(record)}\n`);
      }
    }
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (values.json && !first) out.write('\n');
    process.stderr.write(`ndp inspect: ${e.code?.startsWith('NDP_ERR_') ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
    return 1;
  }
  const summary = summarizer.finish();
  if (values.json) out.write(`\n],"format":"${info.format}","packets":${info.packets},"truncatedTail":${info.truncatedTail},"ipFragments":${info.ipFragments ?? 0},"summary":${JSON.stringify(summary)}}\n`);
  else out.write(`${summaryText(summary, info)}\n`);
  return 0;
}
