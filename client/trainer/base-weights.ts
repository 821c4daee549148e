/**
 * The frozen base weights, keyed by Hugging Face names (`model.layers.0.self_attn.q_proj.weight`,
 * shapes [out, in]): seeded random for presets, or read from a checkpoint's *.safetensors.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NdpError } from '../../src/protocol/errors.js';
import type { ModelConfig } from './model-config.js';
import { readSafetensors, type NamedTensor } from './safetensors.js';
import { seededRandom } from '../../src/seeded-random.js';

export type BaseWeights = Map<string, NamedTensor>;

/** Deterministic uniform [0, 1) (mulberry32), shared with the demo data; re-exported for the trainer's callers. */
export { seededRandom };

/** Every weight name and shape the architecture reads. */
export function expectedWeights(c: ModelConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const { hiddenSize: h, intermediateSize: i, numHeads: nh, numKvHeads: nkv, headDim: d } = c;
  m.set('model.embed_tokens.weight', [c.vocabSize, h]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    m.set(`${p}.input_layernorm.weight`, [h]);
    m.set(`${p}.self_attn.q_proj.weight`, [nh * d, h]);
    m.set(`${p}.self_attn.k_proj.weight`, [nkv * d, h]);
    m.set(`${p}.self_attn.v_proj.weight`, [nkv * d, h]);
    if (c.qkvBias) {
      m.set(`${p}.self_attn.q_proj.bias`, [nh * d]);
      m.set(`${p}.self_attn.k_proj.bias`, [nkv * d]);
      m.set(`${p}.self_attn.v_proj.bias`, [nkv * d]);
    }
    if (c.qkNorm) {
      m.set(`${p}.self_attn.q_norm.weight`, [d]);
      m.set(`${p}.self_attn.k_norm.weight`, [d]);
    }
    m.set(`${p}.self_attn.o_proj.weight`, [h, nh * d]);
    m.set(`${p}.post_attention_layernorm.weight`, [h]);
    m.set(`${p}.mlp.gate_proj.weight`, [i, h]);
    m.set(`${p}.mlp.up_proj.weight`, [i, h]);
    m.set(`${p}.mlp.down_proj.weight`, [h, i]);
  }
  m.set('model.norm.weight', [h]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, h]);
  return m;
}

/** Normal(0, 0.02) matrices (Hugging Face's initializer_range), ones for norms, small biases. */
export function randomBaseWeights(c: ModelConfig, seed: number): BaseWeights {
  const rand = seededRandom(seed ^ 0x5eed);
  const normal = (): number => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const out: BaseWeights = new Map();
  for (const [name, shape] of expectedWeights(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name.endsWith('norm.weight')) data.fill(1);
    else {
      const std = name.endsWith('.bias') ? 0.01 : 0.02;
      for (let k = 0; k < n; k++) data[k] = normal() * std;
    }
    out.set(name, { shape, data });
  }
  return out;
}

/** Reads every *.safetensors of a checkpoint folder and checks names and shapes against the config. */
export function loadCheckpointWeights(c: ModelConfig, dir: string): BaseWeights {
  const expected = expectedWeights(c);
  const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors'));
  if (files.length === 0) throw new NdpError('NDP_ERR_BAD_CHECKPOINT', `${dir}: no *.safetensors file`);
  const out: BaseWeights = new Map();
  for (const f of files) {
    for (const [name, t] of readSafetensors(readFileSync(join(dir, f)), (n) => expected.has(n))) out.set(name, t);
  }
  for (const [name, shape] of expected) {
    const t = out.get(name);
    if (t === undefined) throw new NdpError('NDP_ERR_BAD_CHECKPOINT', `${dir}: weight ${name} missing`);
    if (t.shape.join(',') !== shape.join(',')) throw new NdpError('NDP_ERR_BAD_CHECKPOINT', `${dir}: ${name} has shape [${t.shape.join(',')}], config says [${shape.join(',')}]`);
  }
  return out;
}
