/**
 * The datasets a server serves (NDP.md §7.10 `GET /v1/datasets`): sample sources by name, in the
 * order they were given. A source is anything implementing SampleSource (an .ndp file, usually).
 */
import { NdpError } from '../src/protocol/errors.js';
import { codeName } from '../src/protocol/registry.js';
import type { SampleSource } from '../src/dataset/sample.js';

export interface DatasetInfo {
  readonly name: string;
  readonly src: number;
  readonly srcName: string;
  readonly samples: number;
  readonly tokens: number;
  readonly tokenizer: { readonly name: string; readonly hash: string; readonly vocabSize: number };
}

export class Catalog {
  private readonly byName = new Map<string, SampleSource>();

  constructor(readonly sources: readonly SampleSource[]) {
    for (const source of sources) {
      if (this.byName.has(source.name)) throw new NdpError('NDP_ERR_BAD_PARAMS', `two datasets are named '${source.name}'`);
      this.byName.set(source.name, source);
    }
  }

  /** The dataset named `name`; NDP_ERR_UNKNOWN_DATASET otherwise. */
  byDatasetName(name: string): SampleSource {
    const source = this.byName.get(name);
    if (source === undefined) throw new NdpError('NDP_ERR_UNKNOWN_DATASET', `no dataset named '${name}' (have: ${[...this.byName.keys()].join(', ') || 'none'})`);
    return source;
  }

  /** The one dataset whose SRC is `src`; NDP_ERR_UNKNOWN_DATASET when none or several have it. */
  bySrc(src: number): SampleSource {
    const matches = this.sources.filter((s) => s.src === src);
    if (matches.length !== 1) {
      throw new NdpError('NDP_ERR_UNKNOWN_DATASET', `${matches.length === 0 ? 'no dataset has' : `${matches.length} datasets have`} SRC ${codeName('src', src)}; name the dataset instead`);
    }
    return matches[0]!;
  }

  list(): DatasetInfo[] {
    return this.sources.map((s) => ({
      name: s.name,
      src: s.src,
      srcName: codeName('src', s.src),
      samples: s.sampleCount,
      tokens: s.tokenCount,
      tokenizer: { name: s.tokenizer.name, hash: s.tokenizer.hash, vocabSize: s.tokenizer.vocabSize },
    }));
  }

  async close(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.close()));
  }
}
