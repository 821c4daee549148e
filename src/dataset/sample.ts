/**
 * A training sample as every layer above the wire sees it, and the interface a data server reads
 * samples through (an .ndp file implements it; so can anything else that holds samples).
 */
export interface Sample {
  /** Index of the sample in its dataset. */
  readonly index: number;
  /** SRC code of the sample (TEXT_CORPUS, CODE_REPO, …). */
  readonly src: number;
  readonly tokens: Int32Array;
  /** One byte per token, 1 = trained on. */
  readonly lossMask: Uint8Array;
}

export interface SampleSource {
  /** Dataset name (a file's base name without .ndp unless the header names it). */
  readonly name: string;
  /** Default SRC code of its samples. */
  readonly src: number;
  readonly sampleCount: number;
  readonly tokenCount: number;
  /** Tokenizer identity: name and SHA-256 of its tokenizer.json (hex). */
  readonly tokenizer: { readonly name: string; readonly hash: string; readonly vocabSize: number };
  /** The sample at `index` (0 ≤ index < sampleCount). Random access, no whole-file load. */
  read(index: number): Promise<Sample>;
  /** The encoded sample body (NDP.md §5) at `index`, as stored: what a server fragments. */
  readBody(index: number): Promise<Uint8Array>;
  close(): Promise<void>;
}
