/**
 * The `--pcap` flags shared by `ndp serve`, `ndp pull` and `ndp train`: one definition, so each
 * command adds capture with two lines (spread `PCAP_OPTIONS` into its parseArgs options, pass
 * `openPcapTap(values)` as the transport's `tap` and close it on exit).
 *
 *   --pcap FILE              write what this endpoint sends and receives to FILE (classic pcap)
 *   --pcap-max-bytes N       size limit of one file (default 1 GiB, suffixes k/m/g)
 *   --pcap-rotate N          at the limit, rotate through N files instead of stopping (default: stop)
 *   --pcap-snaplen N         bytes kept of each packet (default 262144)
 */
import { PcapWriter, type PcapWriterOptions } from './pcap-writer.js';

export const PCAP_OPTIONS = {
  pcap: { type: 'string' },
  'pcap-max-bytes': { type: 'string' },
  'pcap-rotate': { type: 'string' },
  'pcap-snaplen': { type: 'string' },
} as const;

export const PCAP_USAGE = `  --pcap FILE           write what this endpoint sends and receives as a pcap (tcpdump/Wireshark; see README)
  --pcap-max-bytes N    size limit of one capture file, suffix k/m/g allowed (default 1g)
  --pcap-rotate N       at the limit rotate through N files FILE, FILE.1.pcap, … (default: stop writing)
  --pcap-snaplen N      bytes kept of each packet (default 262144)`;

export interface PcapFlagValues {
  readonly pcap?: string | undefined;
  readonly 'pcap-max-bytes'?: string | undefined;
  readonly 'pcap-rotate'?: string | undefined;
  readonly 'pcap-snaplen'?: string | undefined;
}

const SUFFIX: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

function size(flag: string, text: string): number {
  const match = /^(\d+)([kmg]?)i?b?$/i.exec(text.trim());
  if (match === null) throw new RangeError(`--${flag} must be a whole number of bytes (suffix k, m or g allowed), got '${text}'`);
  return Number(match[1]) * SUFFIX[match[2]!.toLowerCase()]!;
}

/** The writer options the flags ask for (validated again, with the limits, by PcapWriter). */
export function pcapWriterOptions(values: PcapFlagValues): PcapWriterOptions {
  const options: { -readonly [K in keyof PcapWriterOptions]: PcapWriterOptions[K] } = {};
  if (values['pcap-max-bytes'] !== undefined) options.maxBytes = size('pcap-max-bytes', values['pcap-max-bytes']);
  if (values['pcap-snaplen'] !== undefined) options.snaplen = size('pcap-snaplen', values['pcap-snaplen']);
  if (values['pcap-rotate'] !== undefined) {
    options.onLimit = 'rotate';
    options.maxFiles = size('pcap-rotate', values['pcap-rotate']);
  }
  return options;
}

/** A PcapWriter when `--pcap` was given, else undefined. Throws RangeError on a bad flag value. */
export function openPcapTap(values: PcapFlagValues): PcapWriter | undefined {
  if (values.pcap === undefined) {
    if (values['pcap-max-bytes'] !== undefined || values['pcap-snaplen'] !== undefined || values['pcap-rotate'] !== undefined) {
      throw new RangeError('--pcap-max-bytes, --pcap-rotate and --pcap-snaplen need --pcap FILE');
    }
    return undefined;
  }
  // The capture goes on without the endpoint noticing; the user is told once that it stopped growing.
  const onLimitReached = (writer: PcapWriter): void => {
    process.stderr.write(`ndp: --pcap ${writer.path} reached its size limit: later packets are not captured (use --pcap-max-bytes or --pcap-rotate)\n`);
  };
  return new PcapWriter(values.pcap, { ...pcapWriterOptions(values), onLimitReached });
}
