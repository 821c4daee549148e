/**
 * Wire codes, read from the one machine-readable registry (protocol-spec/registry.json, NDP.md §2).
 * Nothing else in the code base types a code by hand: import the constants from here.
 */
import registryJson from '../../protocol-spec/registry.json' with { type: 'json' };

interface CodeEntry { readonly code: number; readonly doc: string; readonly seed?: boolean }
interface BitEntry { readonly bit: number; readonly doc: string }

export const REGISTRY = registryJson as unknown as {
  readonly version: number;
  readonly frame: { readonly magic: number; readonly headerBytes: number; readonly crcBytes: number; readonly maxPayload: number };
  readonly ports: { readonly udp: number; readonly ws: number; readonly http: number };
  readonly src: Readonly<Record<string, CodeEntry>>;
  readonly dst: Readonly<Record<string, CodeEntry>>;
  readonly typ: Readonly<Record<string, CodeEntry>>;
  readonly segmentFlags: Readonly<Record<string, BitEntry>>;
  readonly control: Readonly<Record<string, CodeEntry>>;
};

function codes<const K extends string>(table: Readonly<Record<string, CodeEntry>>, names: readonly K[]): Readonly<Record<K, number>> {
  const out = {} as Record<K, number>;
  for (const name of names) {
    const entry = table[name];
    if (entry === undefined) throw new Error(`registry.json lacks ${name}`);
    out[name] = entry.code;
  }
  return Object.freeze(out);
}

export const MAGIC = REGISTRY.frame.magic;
export const FRAME_HEADER_BYTES = REGISTRY.frame.headerBytes;
export const FRAME_CRC_BYTES = REGISTRY.frame.crcBytes;
/** Bytes a frame adds around its payload: magic, SRC, DST, TYP, LEN and the CRC-16. */
export const FRAME_OVERHEAD = FRAME_HEADER_BYTES + FRAME_CRC_BYTES;
export const MAX_PAYLOAD = REGISTRY.frame.maxPayload;
export const DEFAULT_PORTS = REGISTRY.ports;

export const SRC = codes(REGISTRY.src, ['TEXT_CORPUS', 'CODE_REPO', 'CHAT', 'INSTRUCTION', 'GRADIENT', 'SYNTHETIC', 'TRAINER', 'CONTROL']);
export const DST = codes(REGISTRY.dst, ['EMBEDDING', 'ATTENTION', 'FFN', 'LM_HEAD', 'LORA', 'EVAL', 'WORKER', 'CONTROL']);
export const TYP = codes(REGISTRY.typ, ['TOKEN_IDS', 'FLOAT32', 'FLOAT16', 'BFLOAT16', 'SEGMENT', 'CONTROL', 'TENSOR']);
export const CONTROL = codes(REGISTRY.control, ['HELLO', 'COOKIE', 'SUBSCRIBE', 'ACCEPT', 'REJECT', 'CREDIT', 'NACK', 'HEARTBEAT', 'STATS', 'END', 'BYE', 'GONE']);

function flag(name: string): number {
  const entry = REGISTRY.segmentFlags[name];
  if (entry === undefined) throw new Error(`registry.json lacks segment flag ${name}`);
  return 1 << entry.bit;
}
export const SEGMENT_FLAG = Object.freeze({
  RETRANSMIT: flag('RETRANSMIT'),
  LAST_FRAGMENT: flag('LAST_FRAGMENT'),
  EVAL: flag('EVAL'),
});

export type CodeTable = 'src' | 'dst' | 'typ' | 'control';

/** The registry name of a code, or `0xNN` when the registry does not know it (unknown codes are legal on the wire). */
export function codeName(table: CodeTable, code: number): string {
  for (const [name, entry] of Object.entries(REGISTRY[table])) if (entry.code === code) return name;
  return `0x${code.toString(16).padStart(2, '0')}`;
}

/** Parses a name (`CODE_REPO`, case-insensitive) or a number (`2`, `0x02`) into a code of the table. */
export function parseCode(table: CodeTable, text: string): number {
  const entry = REGISTRY[table][text.toUpperCase()];
  if (entry !== undefined) return entry.code;
  const n = /^(0x[0-9a-f]+|\d+)$/i.test(text) ? Number(text) : NaN;
  if (Number.isInteger(n) && n >= 0 && n <= 255) return n;
  throw new Error(`unknown ${table.toUpperCase()} code '${text}' (names: ${Object.keys(REGISTRY[table]).join(', ')})`);
}
