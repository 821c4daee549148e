/**
 * A training batch as the client yields it and a training session consumes it. Arrays are row-major
 * `[batchSize, seqLen]` int32 (ONNX Runtime's WebGPU EP has no int64 arithmetic, so the LoRA graph
 * takes int32 ids), allocated once per batch so a session can wrap them in tensors without copying.
 */
export interface Batch {
  readonly batchSize: number;
  readonly seqLen: number;
  /** Token ids; padding positions hold the pad id. */
  readonly inputIds: Int32Array;
  /** 1 for real tokens, 0 for padding. With packing, see `documentIds`. */
  readonly attentionMask: Int32Array;
  /** Token ids where trained on, -100 elsewhere (padding, prompt tokens). Not shifted: the session shifts. */
  readonly labels: Int32Array;
  /** Position of each token within its own document (restarts at 0 for each packed document). */
  readonly positionIds: Int32Array;
  /** With packing: 1-based index of the document each token belongs to within its row, 0 for padding; attention never crosses documents. Without packing: 1 for real tokens. */
  readonly documentIds: Int32Array;
  /** Dataset sample indices in this batch, in row order (packed rows contribute several). */
  readonly sampleIndices: readonly number[];
  /** Tokens that are not padding. */
  readonly tokenCount: number;
}
