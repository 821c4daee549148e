import t from 'tap';
import { LoraSession } from '../../client/trainer/lora-session.js';
import { randomBaseWeights } from '../../client/trainer/base-weights.js';
import { pythonWithTorch, runTorchReference } from '../../bench/torch-reference.js';
import { MICRO_CONFIG, makeBatch } from './fixtures.js';

const python = pythonWithTorch();

for (const variant of [
  { name: 'Qwen2 (tied head, qkv bias, grouped kv)', config: MICRO_CONFIG },
  { name: 'Qwen3 (untied head, q/k norm)', config: { ...MICRO_CONFIG, tieWordEmbeddings: false, qkvBias: false, qkNorm: true } },
]) {
  t.test(`ONNX session and an independent PyTorch implementation give the same losses: ${variant.name}`, { skip: python === undefined ? 'no python3 with torch here ($NDP_PYTHON, python3, /usr/bin/python3)' : false }, async (t) => {
    const config = variant.config;
    const weights = randomBaseWeights(config, 4);
    // Larger weights than the 0.02 init, so attention, norms and the MLP all shape the loss.
    for (const [name, w] of weights) if (!name.endsWith('norm.weight')) w.data.forEach((x, i) => (w.data[i] = x * 15));
    const lora = { rank: 4, alpha: 8, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
    const steps = 4;
    const gradAccum = 2;
    const batches = Array.from({ length: steps * gradAccum }, (_, i) => makeBatch(3, 12, config.vocabSize, i + 1));
    const learningRate = 0.02;
    const ref = runTorchReference({ config, weights, lora, batches, batchSize: 3, seqLen: 12, steps, gradAccum, learningRate, seed: 6, mode: 'cpu' });
    if ('skipped' in ref) {
      t.fail(`the reference did not run: ${ref.skipped}`);
      return;
    }
    const session = new LoraSession({ config, weights, lora, device: 'cpu', learningRate, gradAccum, seed: 6 });
    t.teardown(() => session.close());
    const ours: number[] = [];
    for (let s = 0; s < steps; s++) {
      let sum = 0;
      let count = 0;
      for (const b of batches.slice(s * gradAccum, (s + 1) * gradAccum)) {
        const r = await session.microStep(b);
        sum += r.loss * r.lossTokens;
        count += r.lossTokens;
      }
      ours.push(sum / count);
    }
    const worst = Math.max(...ours.map((l, i) => Math.abs(l - (ref.losses[i] as number))));
    t.ok(worst < 1e-4, `per-step losses ${ours.map((x) => x.toFixed(5)).join(', ')} vs PyTorch ${ref.losses.map((x) => x.toFixed(5)).join(', ')} (worst ${worst.toExponential(2)})`);
    t.ok((ours.at(-1) as number) < (ours[0] as number), 'and the loss falls');
  });
}
