/**
 * Control messages (NDP.md §6): one msgpack map per CONTROL frame (TYP CONTROL, DST CONTROL).
 * Key `t` holds the registry's control code; the other keys are named below. Receivers ignore keys
 * they do not know (forward compatibility); a map with an unknown `t` is dropped and counted
 * (NDP_ERR_UNKNOWN_CONTROL); a payload that is not a map with a numeric `t` is NDP_ERR_BAD_CONTROL.
 */
import { decode, encode } from '@msgpack/msgpack';
import { NdpError } from './errors.js';
import { encodeFrame } from './frame.js';
import { CONTROL, DST, SRC, TYP, codeName } from './registry.js';

/** Where a session's stream stands: the next sample to deliver is `position` of `epoch`. */
export interface Cursor {
  readonly epoch: number;
  readonly position: number;
}

export type LossPolicy = 'repair' | 'lossy';

/** What a trainer asks for when it opens a session (NDP.md §7.1). Every field has a default. */
export interface SessionParams {
  /** Datasets by name or SRC code, with mixing weights. Defaults to every dataset, weight 1. */
  readonly sources?: ReadonlyArray<{ readonly dataset?: string; readonly src?: number; readonly weight?: number }>;
  readonly rank?: number;
  readonly world?: number;
  readonly epochs?: number;
  readonly seed?: number;
  readonly shuffle?: boolean;
  /** How a dataset whose size is not a multiple of `world` is sharded (NDP.md §7.8). Defaults to 'pad'. */
  readonly remainder?: 'pad' | 'drop';
  readonly cursor?: Cursor;
  /** Largest frame (= UDP datagram payload) the server may send. Defaults to 1472 (1500-byte MTU). */
  readonly datagram?: number;
  /** Bytes per second the server may send this session. */
  readonly rate?: number;
  /** Frames the receiver accepts beyond its ack before it grants more. */
  readonly window?: number;
  readonly loss?: LossPolicy;
  /** DST the session's sample frames carry. Defaults to EMBEDDING. */
  readonly dst?: number | string;
  readonly inject?: { readonly drop?: number; readonly corrupt?: number; readonly seed?: number };
}

/** One source of a session as ACCEPT reports it (NDP.md §6.1); its list index is the header's `source` byte. */
export interface SourceInfo {
  readonly dataset: string;
  readonly src: number;
  readonly weight: number;
  /** Samples in the dataset. */
  readonly samples: number;
  /** This rank's samples of it per pass (n_j, §7.8). */
  readonly shard: number;
  /** Its quota per epoch (m_j, §7.8). */
  readonly samplesPerEpoch: number;
  /** m_j / samplesPerEpoch: the realised proportion. */
  readonly share: number;
}

/** Session parameters after defaults and clamps (NDP.md §7.1). */
export type ResolvedSessionParams = Required<Omit<SessionParams, 'inject' | 'cursor' | 'sources' | 'dst'>> & {
  readonly cursor: Cursor;
  readonly dst: number;
  /** Sources as resolved; `weight` is absent in a natural mix (no weights given, NDP.md §7.8). */
  readonly sources: ReadonlyArray<{ readonly dataset: string; readonly src: number; readonly weight?: number }>;
  readonly inject: { readonly drop: number; readonly corrupt: number; readonly seed: number };
};

/** What ACCEPT says besides `t` and `nonce` (NDP.md §6.1). */
export interface AcceptFields {
  session: number;
  params: ResolvedSessionParams;
  samplesPerEpoch: number;
  samplesTotal: number;
  sources: SourceInfo[];
  tokenizer: { name: string; hash: string; vocabSize: number };
  heartbeatMs: number;
  idleTimeoutMs: number;
}

export type ControlMessage =
  | { t: typeof CONTROL.HELLO; version: number; token?: string; pad?: Uint8Array }
  | { t: typeof CONTROL.COOKIE; cookie: Uint8Array; lifetimeMs: number }
  | { t: typeof CONTROL.SUBSCRIBE; nonce: number; cookie?: Uint8Array; token?: string; session?: number; ticket?: string; params?: SessionParams }
  | ({ t: typeof CONTROL.ACCEPT; nonce: number } & AcceptFields)
  | { t: typeof CONTROL.REJECT; code: string; message: string; nonce?: number }
  | { t: typeof CONTROL.CREDIT; session: number; ack: number; window: number }
  | { t: typeof CONTROL.NACK; session: number; ranges: Array<[number, number]> }
  | { t: typeof CONTROL.HEARTBEAT; session: number; time?: number }
  | { t: typeof CONTROL.STATS; session: number; counters: Record<string, number> }
  | { t: typeof CONTROL.END; session: number; nextSeq: number; cursor: Cursor; counters: Record<string, number> }
  | { t: typeof CONTROL.BYE; session: number; reason: string; code?: string; cursor?: Cursor }
  | { t: typeof CONTROL.GONE; session: number; ranges: Array<[number, number]>; reason: string };

const KNOWN = new Set<number>(Object.values(CONTROL));

export function encodeControl(message: ControlMessage): Uint8Array {
  return encode(message, { ignoreUndefined: true });
}

/** A whole CONTROL frame; `from` is SRC CONTROL for a server, SRC TRAINER for a client. */
export function encodeControlFrame(message: ControlMessage, from: number = SRC.CONTROL): Uint8Array {
  return encodeFrame({ src: from, dst: DST.CONTROL, typ: TYP.CONTROL, payload: encodeControl(message) });
}

export function decodeControl(payload: Uint8Array): ControlMessage {
  let value: unknown;
  try {
    value = decode(payload);
  } catch (cause) {
    throw new NdpError('NDP_ERR_BAD_CONTROL', `CONTROL payload is not msgpack: ${(cause as Error).message}`, { cause });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array || typeof (value as { t?: unknown }).t !== 'number') {
    throw new NdpError('NDP_ERR_BAD_CONTROL', 'CONTROL payload is not a msgpack map with a numeric t');
  }
  const t = (value as { t: number }).t;
  if (!KNOWN.has(t)) throw new NdpError('NDP_ERR_UNKNOWN_CONTROL', `control message type ${codeName('control', t)} is not in the registry`);
  return value as ControlMessage;
}
