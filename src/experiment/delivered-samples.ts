/**
 * The samples a lossy stream delivered, as `ndp pull` wrote them (one JSON line per sample, in
 * arrival order), turned into an .ndp file the trainer reads in that same order: the training data of
 * a run is exactly what survived the loss, nothing else and nothing reordered.
 *
 * Also checks the claim that every run sees one stream: a `StreamOrderCheck` remembers which dataset
 * sample each stream position (epoch, position) held in the first run it saw, and counts every later
 * run's deliveries that disagree.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { NdpError } from '../protocol/errors.js';
import { NdpFileWriter } from '../dataset/ndp-file-writer.js';
import type { TokenizerIdentity } from '../dataset/ndp-file-format.js';

/** One line of `ndp pull --out`. */
interface PulledSample {
  readonly index: number;
  readonly epoch: number;
  readonly position: number;
  readonly tokens: number[];
  readonly loss_mask: number[];
}

export interface DeliveredSummary {
  readonly samples: number;
  readonly tokens: number;
  /** Deliveries whose (epoch, position) held another dataset sample in the reference run. */
  readonly orderMismatches: number;
  /** Deliveries compared with the reference run. */
  readonly orderChecked: number;
}

/** Remembers the dataset sample at each stream position; shared by every run of an experiment. */
export class StreamOrderCheck {
  /** One entry per stream position seen: bounded by the length of the one stream every run shares. */
  private readonly reference = new Map<string, number>();

  /** Returns true when the position agrees with (or defines) the reference. */
  observe(epoch: number, position: number, index: number): boolean {
    const key = `${epoch}:${position}`;
    const known = this.reference.get(key);
    if (known === undefined) {
      this.reference.set(key, index);
      return true;
    }
    return known === index;
  }
}

function parseLine(line: string, lineNumber: number, path: string): PulledSample {
  let s: PulledSample;
  try {
    s = JSON.parse(line) as PulledSample;
  } catch (err) {
    throw new NdpError('NDP_ERR_EXPERIMENT_RUN_FAILED', `${path}:${lineNumber}: not a JSON line from ndp pull`, { cause: err });
  }
  if (!Array.isArray(s.tokens) || !Array.isArray(s.loss_mask) || s.tokens.length !== s.loss_mask.length || typeof s.index !== 'number') {
    throw new NdpError('NDP_ERR_EXPERIMENT_RUN_FAILED', `${path}:${lineNumber}: a sample needs index, tokens and an equally long loss_mask`);
  }
  // Without its stream position a sample cannot be checked against the shared order: every such line would compare under one key.
  if (!Number.isInteger(s.epoch) || !Number.isInteger(s.position)) {
    throw new NdpError('NDP_ERR_EXPERIMENT_RUN_FAILED', `${path}:${lineNumber}: a sample needs its integer epoch and position`);
  }
  return s;
}

/**
 * Writes the samples of `jsonlPath` (from `ndp pull --out`) to the .ndp file `ndpPath`, in line
 * order, with the tokenizer identity of the dataset they came from (the trainer checks it against the
 * model's vocabulary). Observes every delivery in `order`.
 */
export async function writeDeliveredSamples(
  jsonlPath: string,
  ndpPath: string,
  source: { readonly name: string; readonly tokenizer: TokenizerIdentity; readonly src: number },
  order: StreamOrderCheck,
): Promise<DeliveredSummary> {
  const writer = await NdpFileWriter.create(ndpPath, { name: `${source.name}-delivered`, tokenizer: source.tokenizer, src: source.src });
  let samples = 0;
  let tokens = 0;
  let orderMismatches = 0;
  let orderChecked = 0;
  let lineNumber = 0;
  try {
    const lines = createInterface({ input: createReadStream(jsonlPath, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of lines) {
      lineNumber++;
      if (line.trim() === '') continue;
      const s = parseLine(line, lineNumber, jsonlPath);
      orderChecked++;
      if (!order.observe(s.epoch, s.position, s.index)) orderMismatches++;
      await writer.append({ tokens: Int32Array.from(s.tokens), lossMask: Uint8Array.from(s.loss_mask) });
      samples++;
      tokens += s.tokens.length;
    }
    await writer.finish();
  } catch (err) {
    await writer.abort();
    throw err;
  }
  return { samples, tokens, orderMismatches, orderChecked };
}
