/**
 * Runs bench/torch_lora_reference.py (plain PyTorch: the same decoder, LoRA, loss, clipping and
 * AdamW as the generated ONNX graphs) on given base weights, initial LoRA matrices and batches.
 * Used by bench/gpu-lora.ts for the tokens/s reference and by a test as an independent check of
 * the ONNX session's numbers.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Batch } from '../client/batch.js';
import type { ModelConfig } from '../client/trainer/model-config.js';
import type { BaseWeights } from '../client/trainer/base-weights.js';
import type { LoraSpec } from '../client/trainer/lora-graphs.js';
import { LoraSession } from '../client/trainer/lora-session.js';
import { lossTargets } from '../client/trainer/loss-targets.js';
import { writeSafetensors } from '../client/trainer/safetensors.js';

export interface TorchReferenceRequest {
  readonly config: ModelConfig;
  readonly weights: BaseWeights;
  readonly lora: LoraSpec;
  readonly batches: readonly Batch[];
  readonly batchSize: number;
  readonly seqLen: number;
  readonly steps: number;
  readonly gradAccum: number;
  readonly learningRate: number;
  /** Seed of the LoRA A init (the ONNX session's init is reproduced). */
  readonly seed: number;
  /** auto: CUDA required (skipped without); cpu: whatever torch has; off: skipped. */
  readonly mode: string;
}

export type TorchReferenceResult =
  | { readonly device: string; readonly firstLoss: number; readonly lastLoss: number; readonly losses: readonly number[]; readonly tokensPerSecond: number; readonly medianStepMs: number; readonly firstStepMs: number }
  | { readonly skipped: string };

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** $NDP_PYTHON, else the first of python3, /usr/bin/python3 that imports torch. */
export function pythonWithTorch(): string | undefined {
  const candidates = process.env.NDP_PYTHON !== undefined ? [process.env.NDP_PYTHON] : ['python3', '/usr/bin/python3'];
  return candidates.find((p) => spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 }).status === 0);
}

export function runTorchReference(req: TorchReferenceRequest): TorchReferenceResult {
  if (req.mode === 'off') return { skipped: '--torch off' };
  const python = pythonWithTorch();
  if (python === undefined) return { skipped: 'no python3 that imports torch ($NDP_PYTHON, python3, /usr/bin/python3)' };
  const dir = mkdtempSync(join(tmpdir(), 'ndp-torch-ref-'));
  try {
    writeFileSync(join(dir, 'base.safetensors'), writeSafetensors(req.weights));
    const init = new LoraSession({ config: req.config, weights: req.weights, lora: req.lora, device: 'cpu', seed: req.seed });
    writeFileSync(join(dir, 'lora.safetensors'), writeSafetensors(new Map(init.params.map((p) => [p.name, { shape: p.shape, data: Float32Array.from(init.getParam(p.name)) }]))));
    const parts: Int32Array[] = [];
    for (const b of req.batches) {
      const t = lossTargets(b, req.config.vocabSize);
      parts.push(t.inputIds, b.positionIds, t.documentIds, Int32Array.of(t.positions.length), t.positions, t.targets);
    }
    const flat = new Int32Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) {
      flat.set(p, at);
      at += p.length;
    }
    writeFileSync(join(dir, 'batches.bin'), new Uint8Array(flat.buffer));
    writeFileSync(
      join(dir, 'spec.json'),
      JSON.stringify({
        config: req.config,
        lora: req.lora,
        batchSize: req.batchSize,
        seqLen: req.seqLen,
        steps: req.steps,
        gradAccum: req.gradAccum,
        microBatches: req.batches.length,
        requireCuda: req.mode === 'auto',
        optimizer: { learningRate: req.learningRate, weightDecay: 0, maxGradNorm: 1 },
      }),
    );
    const script = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../bench/torch_lora_reference.py' : './torch_lora_reference.py', import.meta.url));
    const r = spawnSync(python, [script, dir], { encoding: 'utf8', timeout: 600_000, maxBuffer: 16 << 20 });
    if (r.error !== undefined) return { skipped: `${python} not runnable: ${r.error.message}` };
    if (r.status !== 0) return { skipped: `${python} failed (${r.status}): ${(r.stderr || '').trim().split('\n').at(-1) ?? ''}` };
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { skipped?: string; device: string; losses: number[]; tokensPerSecond: number; stepMs: number[] };
    if (out.skipped !== undefined) return { skipped: out.skipped };
    return { device: out.device, firstLoss: out.losses[0] ?? NaN, lastLoss: out.losses.at(-1) ?? NaN, losses: out.losses, tokensPerSecond: out.tokensPerSecond, medianStepMs: median(out.stepMs.slice(1)), firstStepMs: out.stepMs[0] ?? NaN };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
