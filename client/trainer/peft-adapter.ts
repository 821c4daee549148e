/**
 * Writes a LoRA adapter in PEFT's on-disk layout (`save_pretrained`): adapter_config.json and
 * adapter_model.safetensors whose keys are the module paths of the wrapped model with the adapter
 * name removed, e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` ([r, in]) and
 * `….lora_B.weight` ([out, r]), so `PeftModel.from_pretrained(base, dir)` loads it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors, type NamedTensor } from './safetensors.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

export interface AdapterDescription {
  readonly rank: number;
  readonly alpha: number;
  readonly targets: readonly string[];
  /** `base_model_name_or_path`: the checkpoint folder, or the preset name. */
  readonly baseModel: string;
}

/** PEFT's LoraConfig fields for a plain LoRA adapter on a causal LM. */
export function adapterConfig(d: AdapterDescription): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: d.baseModel,
    r: d.rank,
    lora_alpha: d.alpha,
    lora_dropout: 0,
    target_modules: [...d.targets],
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    layers_to_transform: null,
    layers_pattern: null,
    rank_pattern: {},
    alpha_pattern: {},
    revision: null,
  };
}

export function writeAdapter(dir: string, d: AdapterDescription, tensors: ReadonlyMap<string, NamedTensor>): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(adapterConfig(d), null, 2) + '\n');
  writeFileSync(join(dir, ADAPTER_WEIGHTS_FILE), writeSafetensors(tensors, { format: 'pt' }));
}
