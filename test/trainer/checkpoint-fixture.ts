/** Writes a Hugging Face-style Qwen2 checkpoint folder (config.json + model.safetensors) with seeded weights. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBaseWeights } from '../../client/trainer/base-weights.js';
import { hfConfigFields, type ModelConfig } from '../../client/trainer/model-config.js';
import { writeSafetensors } from '../../client/trainer/safetensors.js';

export function writeCheckpoint(dir: string, c: ModelConfig, seed = 5): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ model_type: c.qkNorm ? 'qwen3' : 'qwen2', ...hfConfigFields(c) }),
  );
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(randomBaseWeights(c, seed)));
}
