/**
 * Batches from a local .ndp file (no network): `ndp train --data FILE` and `--eval-file FILE`.
 * Samples stream in file order through the client's batcher, epoch after epoch; corrupt samples
 * are skipped and counted by the reader (`stats().dropped`).
 */
import type { Batch } from '../batch.js';
import { Batcher, type BatcherOptions } from '../batcher.js';
import { openNdpFile, type NdpFile } from '../../src/dataset/ndp-file.js';

export interface FileBatchesOptions extends BatcherOptions {
  /** Passes over the file. Defaults to Infinity (the consumer decides when to stop). */
  readonly epochs?: number;
  /** Stop after this many batches. Defaults to Infinity. */
  readonly maxBatches?: number;
  /** Leave out each epoch's last, partial batch (its other shape would need new step sessions). Defaults to true. */
  readonly dropLast?: boolean;
}

export async function openFileBatches(path: string): Promise<NdpFile> {
  return openNdpFile(path);
}

/** Batches of `file`, epoch after epoch. */
export async function* fileBatches(file: NdpFile, options: FileBatchesOptions): AsyncGenerator<Batch> {
  const epochs = options.epochs ?? Infinity;
  const maxBatches = options.maxBatches ?? Infinity;
  let produced = 0;
  for (let epoch = 0; epoch < epochs && produced < maxBatches; epoch++) {
    const batcher = new Batcher(options);
    let any = false;
    for await (const sample of file.samples()) {
      any = true;
      for (const b of batcher.push(sample).batches) {
        yield b;
        if (++produced >= maxBatches) return;
      }
    }
    if (!any) return;
    const last = options.dropLast === false ? batcher.flush() : undefined;
    if (last !== undefined) {
      yield last;
      produced++;
    }
  }
}

/** The first `count` batches of a file, for evaluation. */
export async function collectBatches(source: AsyncIterable<Batch>, count: number): Promise<Batch[]> {
  const out: Batch[] = [];
  if (count <= 0) return out;
  for await (const b of source) {
    out.push(b);
    if (out.length >= count) break;
  }
  return out;
}
