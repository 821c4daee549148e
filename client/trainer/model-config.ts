/**
 * Qwen2-style decoder configurations: size presets with seeded random weights (CI, benchmarks) and
 * Hugging Face checkpoint folders (config.json + *.safetensors).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NdpError } from '../../src/protocol/errors.js';

export interface ModelConfig {
  /** Preset name or checkpoint folder. */
  readonly name: string;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly ropeTheta: number;
  readonly rmsNormEps: number;
  /** The output head reuses the embedding matrix. */
  readonly tieWordEmbeddings: boolean;
  /** Qwen2 has biases on q/k/v projections. */
  readonly qkvBias: boolean;
  /** Qwen3 normalizes q and k per head (q_norm, k_norm). */
  readonly qkNorm: boolean;
  /** Checkpoint folder when the weights come from a file. */
  readonly checkpointDir?: string;
}

/** The Qwen3 tokenizer's vocabulary size (embedding rows of Qwen2.5/Qwen3 checkpoints). */
export const QWEN3_VOCAB_SIZE = 151_936;

const PRESET_BASE = { vocabSize: QWEN3_VOCAB_SIZE, ropeTheta: 1_000_000, rmsNormEps: 1e-6, tieWordEmbeddings: true, qkvBias: true, qkNorm: false } as const;

/**
 * Size presets. `tiny` keeps a training step on 2 CPU cores near a second with the full vocabulary
 * (the output head dominates); `small` is a few times larger for benchmarks; `base` is a GPU-sized
 * model (≈0.1 B parameters).
 */
export const MODEL_PRESETS: Readonly<Record<string, ModelConfig>> = {
  tiny: { ...PRESET_BASE, name: 'tiny', hiddenSize: 64, intermediateSize: 172, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16 },
  small: { ...PRESET_BASE, name: 'small', hiddenSize: 256, intermediateSize: 688, numLayers: 4, numHeads: 8, numKvHeads: 2, headDim: 32 },
  base: { ...PRESET_BASE, name: 'base', hiddenSize: 512, intermediateSize: 1376, numLayers: 8, numHeads: 8, numKvHeads: 4, headDim: 64 },
};

/** Reads a Hugging Face config.json (model_type qwen2 or qwen3). */
export function readCheckpointConfig(dir: string): ModelConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new NdpError('NDP_ERR_BAD_CHECKPOINT', `${dir}: cannot read config.json (${(err as Error).message})`, { cause: err });
  }
  const num = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new NdpError('NDP_ERR_BAD_CHECKPOINT', `${dir}/config.json: ${key} missing or not a number`);
    return v;
  };
  const modelType = String(raw.model_type ?? 'qwen2');
  if (modelType !== 'qwen2' && modelType !== 'qwen3') throw new NdpError('NDP_ERR_BAD_CHECKPOINT', `${dir}: model_type ${modelType} is not qwen2 or qwen3`);
  const hiddenSize = num('hidden_size');
  const numHeads = num('num_attention_heads');
  return {
    name: dir,
    vocabSize: num('vocab_size'),
    hiddenSize,
    intermediateSize: num('intermediate_size'),
    numLayers: num('num_hidden_layers'),
    numHeads,
    numKvHeads: num('num_key_value_heads', numHeads),
    headDim: num('head_dim', hiddenSize / numHeads),
    ropeTheta: num('rope_theta', 10_000),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    qkvBias: modelType === 'qwen2',
    qkNorm: modelType === 'qwen3',
    checkpointDir: dir,
  };
}

/** The architecture in the snake_case keys of a Hugging Face config.json (what readCheckpointConfig reads back). */
export function hfConfigFields(c: ModelConfig): Record<string, number | boolean> {
  return {
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.rmsNormEps,
    tie_word_embeddings: c.tieWordEmbeddings,
  };
}

/** A preset name, or a folder holding config.json. */
export function resolveModelConfig(model: string): ModelConfig {
  const preset = MODEL_PRESETS[model];
  if (preset !== undefined) return preset;
  if (!model.includes('/') && !model.includes('.')) {
    throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `unknown model preset '${model}' (presets: ${Object.keys(MODEL_PRESETS).join(', ')}; or a checkpoint folder)`);
  }
  return readCheckpointConfig(model);
}

/** Input and output sizes of each projection LoRA can target. */
export function projectionShape(config: ModelConfig, target: string): { inFeatures: number; outFeatures: number } {
  const { hiddenSize: h, intermediateSize: i, numHeads, numKvHeads, headDim } = config;
  switch (target) {
    case 'q_proj': return { inFeatures: h, outFeatures: numHeads * headDim };
    case 'k_proj':
    case 'v_proj': return { inFeatures: h, outFeatures: numKvHeads * headDim };
    case 'o_proj': return { inFeatures: numHeads * headDim, outFeatures: h };
    case 'gate_proj':
    case 'up_proj': return { inFeatures: h, outFeatures: i };
    case 'down_proj': return { inFeatures: i, outFeatures: h };
    default: throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `unknown LoRA target '${target}' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)`);
  }
}

/** The module path of a projection in Hugging Face's naming. */
export function projectionModule(target: string): string {
  return ['q_proj', 'k_proj', 'v_proj', 'o_proj'].includes(target) ? `self_attn.${target}` : `mlp.${target}`;
}

export function describeModel(c: ModelConfig): string {
  return `${c.name} (${c.numLayers} layers, hidden ${c.hiddenSize}, heads ${c.numHeads}/${c.numKvHeads}, vocab ${c.vocabSize})`;
}
