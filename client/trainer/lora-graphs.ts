/**
 * The ONNX graphs of a LoRA training step over a Qwen2-style decoder:
 * - the gradient graph: forward (RMSNorm, rotary positions, grouped-query attention masked by
 *   causality, document boundaries and padding, SwiGLU MLP, tied or untied head), the summed
 *   cross-entropy at the loss positions, and — from autodiff.ts — its gradient for the LoRA
 *   matrices only;
 * - the evaluation graph: the same forward and loss, no backward;
 * - the update graph: global-norm clipping and AdamW over the accumulated gradients.
 *
 * Hidden states stay 2-D [B·T, H] so every projection is a Gemm against the weight in Hugging Face's
 * [out, in] layout, and LoRA matrices keep PEFT's layout (A [r, in], B [out, r]).
 *
 * The output head is applied only at the M loss positions (labels ≠ -100 after shifting), gathered
 * before the head: the [M, vocab] logits are what a step pays for, not [B·T, vocab], and the loss
 * is unchanged because positions without a label contribute nothing to it.
 */
import { Graph, type FloatDType, type TensorData, type Value } from './graph.js';
import { gradients } from './autodiff.js';
import type { ModelConfig } from './model-config.js';
import { projectionModule, projectionShape } from './model-config.js';
import type { BaseWeights } from './base-weights.js';

/** LoRA hyper-parameters (PEFT's names in comments). */
export interface LoraSpec {
  /** `r`. */
  readonly rank: number;
  /** `lora_alpha`; the update is scaled by alpha / rank. */
  readonly alpha: number;
  /** `target_modules`. */
  readonly targets: readonly string[];
}

/** One trainable matrix, in PEFT's layout. */
export interface LoraParam {
  /** Graph input name, e.g. `lora.0.q_proj.A`. */
  readonly name: string;
  readonly layer: number;
  readonly target: string;
  readonly kind: 'A' | 'B';
  /** A: [r, in]; B: [out, r]. */
  readonly shape: readonly [number, number];
  /** PEFT's state-dict key, e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`. */
  readonly peftKey: string;
}

export function loraParams(config: ModelConfig, spec: LoraSpec): LoraParam[] {
  const out: LoraParam[] = [];
  for (let layer = 0; layer < config.numLayers; layer++) {
    for (const target of spec.targets) {
      const { inFeatures, outFeatures } = projectionShape(config, target);
      const module = `base_model.model.model.layers.${layer}.${projectionModule(target)}`;
      out.push({ name: `lora.${layer}.${target}.A`, layer, target, kind: 'A', shape: [spec.rank, inFeatures], peftKey: `${module}.lora_A.weight` });
      out.push({ name: `lora.${layer}.${target}.B`, layer, target, kind: 'B', shape: [outFeatures, spec.rank], peftKey: `${module}.lora_B.weight` });
    }
  }
  return out;
}

/** Names of the gradient graph's inputs besides the LoRA matrices. */
export const STEP_INPUTS = {
  inputIds: 'input_ids',
  positionIds: 'position_ids',
  /** Document id per token, 0 for padding: attention stays within one document. */
  documentIds: 'document_ids',
  /** Flat indices (row·T + t) of the positions whose next token is a label, int32 [M]. */
  lossPositions: 'loss_positions',
  /** The label each loss position predicts, int32 [M, 1]. */
  lossTargets: 'loss_targets',
} as const;

export const LOSS_SUM = 'loss_sum';
export const gradName = (p: LoraParam): string => `grad.${p.name}`;

/** Magnitude of the additive mask: exp(−1e9) is 0 in float32 and float64, and −1e9 cannot overflow to NaN as −∞ would in a fully masked row. */
const MASK_NEGATIVE = -1e9;

function toDType(data: Float32Array, dtype: FloatDType): TensorData {
  return dtype === 'float64' ? Float64Array.from(data) : data;
}

interface ForwardResult {
  readonly graph: Graph;
  readonly params: Value[];
  readonly lossSum: Value;
}

function buildForward(config: ModelConfig, weights: BaseWeights, spec: LoraSpec, batchSize: number, seqLen: number, dtype: FloatDType): ForwardResult {
  const g = new Graph(dtype);
  const B = batchSize;
  const T = seqLen;
  const N = B * T;
  const { hiddenSize: H, numHeads: nh, numKvHeads: nkv, headDim: D } = config;
  const w = (name: string): Value => {
    const existing = g.initializers.get(name);
    if (existing !== undefined) return existing.value;
    const t = weights.get(name);
    if (t === undefined) throw new Error(`base weight ${name} missing`);
    return g.initializer(name, toDType(t.data, dtype), t.shape);
  };

  const inputIds = g.input(STEP_INPUTS.inputIds, 'int32', [B, T]);
  const positionIds = g.input(STEP_INPUTS.positionIds, 'int32', [B, T]);
  const documentIds = g.input(STEP_INPUTS.documentIds, 'int32', [B, T]);
  const lossPositions = g.input(STEP_INPUTS.lossPositions, 'int32', ['M']);
  const lossTargets = g.input(STEP_INPUTS.lossTargets, 'int32', ['M', 1]);
  const params = new Map<string, Value>();
  for (const p of loraParams(config, spec)) params.set(p.name, g.input(p.name, dtype, p.shape));
  const scale = g.scalar(spec.alpha / spec.rank);

  // Attention bias [B,1,T,T]: 0 where query i may see key j (j ≤ i, same document, key not padding).
  const docQ = g.unsqueeze(documentIds, [2]);
  const docK = g.unsqueeze(documentIds, [1]);
  const causal = g.constant(Array.from({ length: T * T }, (_, k) => (k % T <= Math.floor(k / T) ? 1 : 0)), [T, T], 'bool');
  const allowed = g.and(g.and(g.equal(docQ, docK), g.greater(docK, g.scalar(0, 'int32'))), causal);
  const maskBias = g.unsqueeze(g.where(allowed, g.scalar(0), g.scalar(MASK_NEGATIVE)), [1]);

  // Rotary tables [B,1,T,D] from the per-document positions.
  const invFreq = Array.from({ length: D / 2 }, (_, i) => 1 / config.ropeTheta ** ((2 * i) / D));
  const freqs = g.mul(g.unsqueeze(g.cast(positionIds, dtype), [2]), g.constant(invFreq, [D / 2], dtype));
  const angles = g.unsqueeze(g.concat([freqs, freqs], 2), [1]);
  const cos = g.cos(angles);
  const sin = g.sin(angles);
  const rotary = (x: Value): Value => {
    const rotated = g.concat([g.neg(g.slice(x, 3, D / 2, D)), g.slice(x, 3, 0, D / 2)], 3);
    return g.add(g.mul(x, cos), g.mul(rotated, sin));
  };

  const rmsNorm = (x: Value, weight: string): Value => {
    const meanSquare = g.reduceMean(g.mul(x, x), [-1], true);
    const inv = g.reciprocal(g.sqrt(g.add(meanSquare, g.scalar(config.rmsNormEps))));
    return g.mul(g.mul(x, inv), w(weight));
  };

  const linear = (x: Value, layer: number, target: string): Value => {
    const prefix = `model.layers.${layer}.${projectionModule(target)}`;
    let y = g.matmulTransB(x, w(`${prefix}.weight`));
    if (config.qkvBias && ['q_proj', 'k_proj', 'v_proj'].includes(target)) y = g.add(y, w(`${prefix}.bias`));
    const a = params.get(`lora.${layer}.${target}.A`);
    const b = params.get(`lora.${layer}.${target}.B`);
    if (a !== undefined && b !== undefined) y = g.add(y, g.mul(g.matmulTransB(g.matmulTransB(x, a), b), scale));
    return y;
  };

  let hidden = g.reshape(g.gather(w('model.embed_tokens.weight'), inputIds), [N, H]);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    const x = rmsNorm(hidden, `${p}.input_layernorm.weight`);
    let q = g.reshape(linear(x, l, 'q_proj'), [B, T, nh, D]);
    let k = g.reshape(linear(x, l, 'k_proj'), [B, T, nkv, D]);
    let v = g.reshape(linear(x, l, 'v_proj'), [B, T, nkv, D]);
    if (config.qkNorm) {
      q = rmsNorm(q, `${p}.self_attn.q_norm.weight`);
      k = rmsNorm(k, `${p}.self_attn.k_norm.weight`);
    }
    // Grouped-query attention: query head h reads key/value head ⌊h / (nh/nkv)⌋, as HF's repeat_kv.
    const repeat = (t: Value): Value =>
      nkv === nh ? t : g.reshape(g.expand(g.reshape(t, [B, T, nkv, 1, D]), [B, T, nkv, nh / nkv, D]), [B, T, nh, D]);
    q = rotary(g.transpose(q, [0, 2, 1, 3]));
    k = rotary(g.transpose(repeat(k), [0, 2, 1, 3]));
    v = g.transpose(repeat(v), [0, 2, 1, 3]);
    const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 1, 3, 2])), g.scalar(1 / Math.sqrt(D))), maskBias);
    const context = g.matmul(g.softmax(scores, -1), v);
    const merged = g.reshape(g.transpose(context, [0, 2, 1, 3]), [N, nh * D]);
    hidden = g.add(hidden, linear(merged, l, 'o_proj'));

    const y = rmsNorm(hidden, `${p}.post_attention_layernorm.weight`);
    const gate = linear(y, l, 'gate_proj');
    const act = g.mul(g.mul(gate, g.sigmoid(gate)), linear(y, l, 'up_proj'));
    hidden = g.add(hidden, linear(act, l, 'down_proj'));
  }
  const final = rmsNorm(hidden, 'model.norm.weight');

  const picked = g.gather(final, lossPositions);
  const head = w(config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  const logits = g.matmulTransB(picked, head);
  // Cross-entropy = logsumexp(logits) − logit[target], from max, sub, exp, sum and log: ONNX Runtime's
  // CPU ReduceLogSumExp kernel took 57% of a tiny step (1.8 s of 3.2 s at 4×128), these vectorized
  // kernels a fraction of that. The max shift cancels exactly, so autodiff treats it as a constant.
  const shifted = g.sub(logits, g.stopGradient(g.reduceMax(logits, [1], true)));
  const logSumExp = g.log(g.reduceSum(g.exp(shifted), [1], true));
  const perToken = g.sub(logSumExp, g.gatherElements(shifted, lossTargets, 1));
  const lossSum = g.reduceSum(perToken, [0, 1], false);
  return { graph: g, params: [...params.values()], lossSum };
}

/** Forward + backward: outputs `loss_sum` and `grad.<param>` (gradients of the summed loss). */
export function buildGradientGraph(config: ModelConfig, weights: BaseWeights, spec: LoraSpec, batchSize: number, seqLen: number, dtype: FloatDType = 'float32'): Graph {
  const { graph, params, lossSum } = buildForward(config, weights, spec, batchSize, seqLen, dtype);
  const grads = gradients(graph, lossSum, params);
  graph.output(lossSum, LOSS_SUM);
  for (const p of loraParams(config, spec)) graph.output(grads.get(p.name) as Value, gradName(p));
  return graph;
}

/** Forward only: outputs `loss_sum`. */
export function buildEvalGraph(config: ModelConfig, weights: BaseWeights, spec: LoraSpec, batchSize: number, seqLen: number, dtype: FloatDType = 'float32'): Graph {
  const { graph, lossSum } = buildForward(config, weights, spec, batchSize, seqLen, dtype);
  graph.output(lossSum, LOSS_SUM);
  return graph;
}

/** AdamW constants baked into the update graph. Defaults are PyTorch's. */
export interface AdamWConstants {
  /** Defaults to 0.9. */
  readonly beta1: number;
  /** Defaults to 0.999. */
  readonly beta2: number;
  /** Defaults to 1e-8. */
  readonly epsilon: number;
}
export const DEFAULT_ADAMW: AdamWConstants = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };

/** Scalar inputs of the update graph. */
export const UPDATE_INPUTS = ['learning_rate', 'grad_scale', 'bias_correction1', 'bias_correction2', 'weight_decay', 'max_grad_norm'] as const;
export const GRAD_NORM = 'grad_norm';

/**
 * Clip + AdamW over all LoRA matrices at once. Inputs per parameter `param.<n>`, `m.<n>`, `v.<n>`,
 * `grad.<n>` (summed over the accumulation group; `grad_scale` = 1 / loss tokens makes it the mean);
 * outputs `param_out.<n>`, `m_out.<n>`, `v_out.<n>` and `grad_norm` (before clipping). Matches
 * `torch.nn.utils.clip_grad_norm_` followed by `torch.optim.AdamW`.
 */
export function buildUpdateGraph(params: readonly LoraParam[], dtype: FloatDType = 'float32', adam: AdamWConstants = DEFAULT_ADAMW): Graph {
  const g = new Graph(dtype);
  const scalars = Object.fromEntries(UPDATE_INPUTS.map((n) => [n, g.input(n, dtype, [])])) as Record<(typeof UPDATE_INPUTS)[number], Value>;
  const state = params.map((p) => ({
    p,
    param: g.input(`param.${p.name}`, dtype, p.shape),
    m: g.input(`m.${p.name}`, dtype, p.shape),
    v: g.input(`v.${p.name}`, dtype, p.shape),
    grad: g.mul(g.input(`grad.${p.name}`, dtype, p.shape), scalars.grad_scale),
  }));
  let squares: Value | undefined;
  for (const s of state) {
    const sq = g.reduceSum(g.mul(s.grad, s.grad), [0, 1], false);
    squares = squares === undefined ? sq : g.add(squares, sq);
  }
  const norm = g.sqrt(squares ?? g.scalar(0));
  const clip = g.min(g.scalar(1), g.div(scalars.max_grad_norm, g.add(norm, g.scalar(1e-6))));
  const one = g.scalar(1);
  for (const s of state) {
    const grad = g.mul(s.grad, clip);
    const m = g.add(g.mul(s.m, g.scalar(adam.beta1)), g.mul(grad, g.scalar(1 - adam.beta1)));
    const v = g.add(g.mul(s.v, g.scalar(adam.beta2)), g.mul(g.mul(grad, grad), g.scalar(1 - adam.beta2)));
    const mHat = g.div(m, scalars.bias_correction1);
    const vHat = g.div(v, scalars.bias_correction2);
    const decayed = g.mul(s.param, g.sub(one, g.mul(scalars.learning_rate, scalars.weight_decay)));
    const step = g.div(mHat, g.add(g.sqrt(vHat), g.scalar(adam.epsilon)));
    g.output(g.sub(decayed, g.mul(step, scalars.learning_rate)), `param_out.${s.p.name}`);
    g.output(m, `m_out.${s.p.name}`);
    g.output(v, `v_out.${s.p.name}`);
  }
  g.output(norm, GRAD_NORM);
  return g;
}
