/**
 * Resolution of session parameters (NDP.md §7.1): defaults filled in, clamps applied, everything
 * else checked. A bad value is NDP_ERR_BAD_PARAMS (an unknown dataset NDP_ERR_UNKNOWN_DATASET), the
 * same whether the parameters came over HTTP or in a SUBSCRIBE.
 */
import type { ResolvedSessionParams, SessionParams } from '../src/protocol/control.js';
import { NdpError } from '../src/protocol/errors.js';
import { DST, parseCode } from '../src/protocol/registry.js';
import { DEFAULT_DATAGRAM, MAX_FRAME_BYTES, MAX_UDP_DATAGRAM } from '../src/protocol/segmenter.js';
import type { SampleSource } from '../src/dataset/sample.js';
import type { Catalog } from './catalog.js';
import type { ServerOptions } from './options.js';

/** Smallest `datagram` a session may ask for (NDP.md §7.1). */
export const MIN_SESSION_DATAGRAM = 128;
export const DEFAULT_WINDOW = 1024;
export const MAX_WORLD = 65536;
export const MAX_SOURCES = 255;

const KNOWN_KEYS = new Set(['sources', 'rank', 'world', 'epochs', 'seed', 'shuffle', 'remainder', 'cursor', 'datagram', 'rate', 'window', 'loss', 'dst', 'inject']);

function bad(message: string): never {
  throw new NdpError('NDP_ERR_BAD_PARAMS', message);
}

function uint(name: string, value: unknown, fallback: number, min = 0, max = 0xffffffff): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) bad(`${name} must be an integer ${min}..${max}, got ${JSON.stringify(value)}`);
  return value;
}

function probability(name: string, value: unknown, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) bad(`${name} must be a number in [0, 1], got ${JSON.stringify(value)}`);
  return value;
}

export interface ResolvedSession {
  readonly params: ResolvedSessionParams;
  readonly datasets: readonly SampleSource[];
  /** Weights as given (undefined everywhere: natural mix). */
  readonly weights: ReadonlyArray<number | undefined>;
}

/** Resolves `raw` (untrusted JSON or msgpack) against the catalog and the server's limits. */
export function resolveParams(raw: unknown, catalog: Catalog, options: ServerOptions, transport: 'udp' | 'ws' | 'any'): ResolvedSession {
  if (raw === undefined || raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw) || raw instanceof Uint8Array) bad('session parameters must be a map');
  const p = raw as Record<string, unknown>;
  for (const key of Object.keys(p)) if (!KNOWN_KEYS.has(key)) bad(`unknown session parameter '${key}'`);
  const given = p as SessionParams;

  let datasets: SampleSource[];
  let weights: Array<number | undefined>;
  if (given.sources === undefined) {
    datasets = [...catalog.sources];
    weights = datasets.map(() => undefined);
  } else {
    if (!Array.isArray(given.sources) || given.sources.length === 0 || given.sources.length > MAX_SOURCES) bad(`sources must be a list of 1..${MAX_SOURCES} entries`);
    datasets = [];
    weights = [];
    for (const entry of given.sources as unknown[]) {
      if (typeof entry !== 'object' || entry === null) bad('each source must be a map {dataset | src, weight?}');
      const e = entry as { dataset?: unknown; src?: unknown; weight?: unknown };
      let source: SampleSource;
      if (typeof e.dataset === 'string') source = catalog.byDatasetName(e.dataset);
      else if (typeof e.src === 'number' || typeof e.src === 'string') {
        let code: number;
        try {
          code = typeof e.src === 'number' ? uint('src', e.src, 0, 0, 255) : parseCode('src', e.src);
        } catch (err) {
          bad((err as Error).message);
        }
        source = catalog.bySrc(code);
      } else bad('a source names a dataset (string) or a src code');
      if (datasets.includes(source)) bad(`dataset '${source.name}' is named twice`);
      if (e.weight !== undefined && (typeof e.weight !== 'number' || !Number.isFinite(e.weight) || e.weight <= 0)) bad(`weight of '${source.name}' must be a finite number > 0`);
      datasets.push(source);
      weights.push(e.weight as number | undefined);
    }
  }
  if (datasets.length === 0) bad('the server has no datasets');
  if (weights.some((w) => w !== undefined)) weights = weights.map((w) => w ?? 1);

  const world = uint('world', given.world, 1, 1, MAX_WORLD);
  const rank = uint('rank', given.rank, 0, 0, world - 1);
  const epochs = uint('epochs', given.epochs, 1, 1);
  const seed = uint('seed', given.seed, 0);
  if (given.shuffle !== undefined && typeof given.shuffle !== 'boolean') bad('shuffle must be true or false');
  const remainder = given.remainder ?? 'pad';
  if (remainder !== 'pad' && remainder !== 'drop') bad(`remainder must be 'pad' or 'drop', got ${JSON.stringify(remainder)}`);
  const loss = given.loss ?? 'repair';
  if (loss !== 'repair' && loss !== 'lossy') bad(`loss must be 'repair' or 'lossy', got ${JSON.stringify(loss)}`);

  const transportMax = transport === 'ws' ? MAX_FRAME_BYTES : MAX_UDP_DATAGRAM;
  const datagram = Math.min(uint('datagram', given.datagram, DEFAULT_DATAGRAM, MIN_SESSION_DATAGRAM), transportMax, options.maxDatagram);
  const askedRate = uint('rate', given.rate, options.sessionRate, 0, Number.MAX_SAFE_INTEGER);
  const rate = askedRate === 0 ? options.maxSessionRate : Math.min(askedRate, options.maxSessionRate);
  const window = Math.min(uint('window', given.window, DEFAULT_WINDOW, 1), options.maxWindow);

  let dst: number = DST.EMBEDDING;
  if (given.dst !== undefined) {
    try {
      dst = typeof given.dst === 'number' ? uint('dst', given.dst, DST.EMBEDDING, 0, 255) : parseCode('dst', String(given.dst));
    } catch (err) {
      bad((err as Error).message);
    }
  }

  let cursor = { epoch: 0, position: 0 };
  if (given.cursor !== undefined) {
    const c = given.cursor as unknown;
    if (typeof c !== 'object' || c === null) bad('cursor must be {epoch, position}');
    const { epoch, position } = c as { epoch?: unknown; position?: unknown };
    cursor = { epoch: uint('cursor.epoch', epoch, 0, 0, epochs), position: uint('cursor.position', position, 0) };
  }

  const inj = (given.inject ?? {}) as { drop?: unknown; corrupt?: unknown; seed?: unknown };
  if (typeof inj !== 'object' || inj === null) bad('inject must be {drop?, corrupt?, seed?}');
  const inject = {
    drop: probability('inject.drop', inj.drop, options.inject.drop),
    corrupt: probability('inject.corrupt', inj.corrupt, options.inject.corrupt),
    seed: uint('inject.seed', inj.seed, options.inject.seed),
  };
  if (inject.drop + inject.corrupt > 1) bad('inject.drop + inject.corrupt must be at most 1');

  const params: ResolvedSessionParams = {
    sources: datasets.map((d, j) => (weights[j] === undefined ? { dataset: d.name, src: d.src } : { dataset: d.name, src: d.src, weight: weights[j]! })),
    rank,
    world,
    epochs,
    seed,
    shuffle: given.shuffle ?? true,
    remainder,
    cursor,
    datagram,
    rate,
    window,
    loss,
    dst,
    inject,
  };
  return { params, datasets, weights };
}
