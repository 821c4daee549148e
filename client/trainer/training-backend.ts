/**
 * The contract between `ndp train` and whatever runs the LoRA steps. The ONNX Runtime session
 * (`OnnxTrainingBackend`, generated graphs in a worker thread) implements it; a PyTorch backend
 * (`ndp train --backend torch`) implements the same interface so the train loop, metrics and
 * adapter output do not depend on the engine.
 */
import type { Batch } from '../batch.js';

/** What a backend is asked to train. Defaults are those of `ndp train`. */
export interface TrainingBackendOptions {
  /** `tiny`, `small`, … (seeded random base) or a Hugging Face Qwen2 checkpoint folder. */
  readonly model: string;
  /** `auto` | `cpu` | `webgpu` | `cuda`. `auto` picks the best available and reports it in `InitInfo.device`. */
  readonly device: string;
  /** LoRA rank. Defaults to 8. */
  readonly loraRank: number;
  /** LoRA scaling numerator (scale = alpha / rank). Defaults to 16. */
  readonly loraAlpha: number;
  /** Projections that get adapters (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`). Defaults to q_proj, v_proj. */
  readonly targetModules: readonly string[];
  /** AdamW learning rate. Defaults to 1e-3. */
  readonly learningRate: number;
  /** AdamW decoupled weight decay. Defaults to 0. */
  readonly weightDecay: number;
  /** Global gradient norm clip. Defaults to 1.0. */
  readonly maxGradNorm: number;
  /** Micro-batches whose gradients are summed before one optimizer update. Defaults to 1. */
  readonly gradAccum: number;
  /** Seed for the base init (presets) and the LoRA A init. Defaults to 0. */
  readonly seed: number;
  /** Vocabulary size of the tokenizer that produced the batches; a mismatch with the model is refused (NDP_ERR_VOCAB_MISMATCH). */
  readonly tokenizerVocabSize?: number;
}

/** What `init` reports. */
export interface InitInfo {
  /** The device actually used (after resolving `auto`). */
  readonly device: string;
  /** Human-readable model description, e.g. `tiny (2 layers, hidden 64, vocab 151936)`. */
  readonly model: string;
  readonly vocabSize: number;
  /** Trainable LoRA parameters. */
  readonly trainableParameters: number;
  /** Why `auto` picked this device, or notes about fallbacks. */
  readonly notes: readonly string[];
}

/** The result of one micro-batch. */
export interface StepResult {
  /** Mean cross-entropy over the micro-batch's trained tokens (NaN when it had none). */
  readonly loss: number;
  /** Tokens that contributed to the loss (shifted labels ≠ -100 within one document). */
  readonly lossTokens: number;
  /** True when this micro-batch completed an accumulation group and the optimizer stepped. */
  readonly updated: boolean;
  /** Global gradient norm before clipping (only when `updated`). */
  readonly gradNorm?: number;
  /** Optimizer steps taken so far. */
  readonly optimizerStep: number;
  /** Wall time spent in the engine for this call. */
  readonly computeMs: number;
}

export interface EvalResult {
  /** Mean cross-entropy over the batch's trained tokens. */
  readonly loss: number;
  readonly lossTokens: number;
}

/**
 * A LoRA training engine. Calls are sequential: the caller awaits each before the next. `step` must
 * not block the event loop for the duration of the compute (run it off the main thread), so that
 * the network receive path keeps draining sockets during a step.
 */
export interface TrainingBackend {
  init(options: TrainingBackendOptions): Promise<InitInfo>;
  /** Forward + backward on one micro-batch; every `gradAccum`-th call also clips and applies AdamW. */
  step(batch: Batch): Promise<StepResult>;
  /** Loss on a batch without changing any state. */
  evaluate(batch: Batch): Promise<EvalResult>;
  /** Writes adapter_config.json + adapter_model.safetensors in PEFT's layout into `dir` (created if missing). */
  saveAdapter(dir: string): Promise<void>;
  /** Frees the engine (worker thread, sessions). Safe to call twice. */
  close(): Promise<void>;
}
