/**
 * The LoRA training engine on ONNX Runtime, in-process: builds the step graphs for a batch shape,
 * keeps the base weights as initializers of those sessions (uploaded to the device once, when the
 * session is created) and the small LoRA state (matrices, AdamW moments, gradient accumulators) in
 * host memory, where reading it back costs little. `OnnxTrainingBackend` runs this in a worker
 * thread; tests use it directly.
 */
import ort from 'onnxruntime-node';
import type { Batch } from '../batch.js';
import { NdpError } from '../../src/protocol/errors.js';
import type { FloatDType } from './graph.js';
import { encodeModel } from './onnx-encoder.js';
import type { ModelConfig } from './model-config.js';
import type { BaseWeights } from './base-weights.js';
import { seededRandom } from './base-weights.js';
import { lossTargets } from './loss-targets.js';
import type { ConcreteDevice } from './devices.js';
import {
  DEFAULT_ADAMW,
  GRAD_NORM,
  LOSS_SUM,
  STEP_INPUTS,
  buildEvalGraph,
  buildGradientGraph,
  buildUpdateGraph,
  gradName,
  loraParams,
  type LoraParam,
  type LoraSpec,
} from './lora-graphs.js';
import type { Graph } from './graph.js';

type FloatArray = Float32Array | Float64Array;

export interface LoraSessionOptions {
  readonly config: ModelConfig;
  readonly weights: BaseWeights;
  readonly lora: LoraSpec;
  readonly device: ConcreteDevice;
  /** Defaults to float32; float64 (cpu only) serves the gradient checks. */
  readonly dtype?: FloatDType;
  /** AdamW learning rate. Defaults to 1e-3. */
  readonly learningRate?: number;
  /** Defaults to 0. */
  readonly weightDecay?: number;
  /** Defaults to 1.0. */
  readonly maxGradNorm?: number;
  /** Micro-batches per optimizer step. Defaults to 1. */
  readonly gradAccum?: number;
  /** Seed of the LoRA A init. Defaults to 0. */
  readonly seed?: number;
  /** Print ONNX Runtime's node placement (logSeverityLevel 0). Defaults to false. */
  readonly verbosePlacement?: boolean;
  /** Batch shapes whose sessions are kept; older ones are released. Defaults to 2. */
  readonly maxCachedShapes?: number;
}

export interface MicroStepResult {
  readonly loss: number;
  readonly lossTokens: number;
  readonly updated: boolean;
  readonly gradNorm?: number;
  readonly optimizerStep: number;
}

interface ShapeSessions {
  grad: ort.InferenceSession;
  eval?: ort.InferenceSession;
}

export class LoraSession {
  readonly params: readonly LoraParam[];
  private readonly dtype: FloatDType;
  private readonly values: FloatArray[];
  private readonly m: FloatArray[];
  private readonly v: FloatArray[];
  private readonly gradSum: FloatArray[];
  private accumulatedTokens = 0;
  private accumulatedMicro = 0;
  private optimizerStep = 0;
  private updateSession: ort.InferenceSession | undefined;
  private readonly shapes = new Map<string, ShapeSessions>();

  constructor(private readonly options: LoraSessionOptions) {
    this.dtype = options.dtype ?? 'float32';
    if (this.dtype === 'float64' && options.device !== 'cpu') throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', 'float64 graphs run on cpu only');
    if (!(options.lora.rank >= 1 && Number.isInteger(options.lora.rank))) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `LoRA rank must be a positive integer, got ${options.lora.rank}`);
    if (options.lora.targets.length === 0) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', 'no LoRA target modules');
    this.params = loraParams(options.config, options.lora);
    const rand = seededRandom((options.seed ?? 0) ^ 0x10a);
    const alloc = (n: number): FloatArray => (this.dtype === 'float64' ? new Float64Array(n) : new Float32Array(n));
    // PEFT's init: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0, so training starts at the base model.
    this.values = this.params.map((p) => {
      const data = alloc(p.shape[0] * p.shape[1]);
      if (p.kind === 'A') {
        const bound = 1 / Math.sqrt(p.shape[1]);
        for (let i = 0; i < data.length; i++) data[i] = (rand() * 2 - 1) * bound;
      }
      return data;
    });
    this.m = this.params.map((p) => alloc(p.shape[0] * p.shape[1]));
    this.v = this.params.map((p) => alloc(p.shape[0] * p.shape[1]));
    this.gradSum = this.params.map((p) => alloc(p.shape[0] * p.shape[1]));
  }

  get step(): number {
    return this.optimizerStep;
  }

  private sessionOptions(): ort.InferenceSession.SessionOptions {
    return {
      executionProviders: [this.options.device],
      logSeverityLevel: this.options.verbosePlacement === true ? 0 : 3,
      // The extended fusions (QuickGelu, …) have float32 kernels only.
      graphOptimizationLevel: this.dtype === 'float64' ? 'basic' : 'all',
    };
  }

  private async createSession(graph: Graph): Promise<ort.InferenceSession> {
    const encoded = encodeModel(graph);
    const options = this.sessionOptions();
    if (encoded.externalData !== undefined) options.externalData = [encoded.externalData];
    return ort.InferenceSession.create(encoded.model, options);
  }

  private async sessionsFor(batch: Batch): Promise<ShapeSessions> {
    const key = `${batch.batchSize}x${batch.seqLen}`;
    let s = this.shapes.get(key);
    if (s === undefined) {
      const { config, weights, lora } = this.options;
      s = { grad: await this.createSession(buildGradientGraph(config, weights, lora, batch.batchSize, batch.seqLen, this.dtype)) };
      this.shapes.set(key, s);
      const limit = this.options.maxCachedShapes ?? 2;
      for (const [old, sessions] of this.shapes) {
        if (this.shapes.size <= limit) break;
        this.shapes.delete(old);
        await sessions.grad.release();
        await sessions.eval?.release();
      }
    }
    return s;
  }

  private tensor(data: FloatArray, dims: readonly number[]): ort.Tensor {
    return new ort.Tensor(this.dtype, data, dims);
  }

  private batchFeeds(batch: Batch): { feeds: Record<string, ort.Tensor>; tokens: number } {
    const t = lossTargets(batch, this.options.config.vocabSize);
    const dims = [batch.batchSize, batch.seqLen];
    const feeds: Record<string, ort.Tensor> = {
      [STEP_INPUTS.inputIds]: new ort.Tensor('int32', t.inputIds, dims),
      [STEP_INPUTS.positionIds]: new ort.Tensor('int32', batch.positionIds, dims),
      [STEP_INPUTS.documentIds]: new ort.Tensor('int32', t.documentIds, dims),
      [STEP_INPUTS.lossPositions]: new ort.Tensor('int32', t.positions, [t.positions.length]),
      [STEP_INPUTS.lossTargets]: new ort.Tensor('int32', t.targets, [t.targets.length, 1]),
    };
    this.params.forEach((p, i) => (feeds[p.name] = this.tensor(this.values[i] as FloatArray, p.shape)));
    return { feeds, tokens: t.positions.length };
  }

  /** Forward + backward on one micro-batch; applies the optimizer after every `gradAccum` calls. */
  async microStep(batch: Batch): Promise<MicroStepResult> {
    const sessions = await this.sessionsFor(batch);
    const { feeds, tokens } = this.batchFeeds(batch);
    let loss = NaN;
    if (tokens > 0) {
      const out = await sessions.grad.run(feeds);
      loss = Number(out[LOSS_SUM]?.data[0]) / tokens;
      this.params.forEach((p, i) => {
        const g = out[gradName(p)]?.data as FloatArray;
        const acc = this.gradSum[i] as FloatArray;
        for (let k = 0; k < acc.length; k++) acc[k] = (acc[k] as number) + (g[k] as number);
      });
      this.accumulatedTokens += tokens;
    }
    this.accumulatedMicro++;
    if (this.accumulatedMicro < (this.options.gradAccum ?? 1)) return { loss, lossTokens: tokens, updated: false, optimizerStep: this.optimizerStep };
    const gradNorm = await this.applyUpdate();
    return { loss, lossTokens: tokens, updated: gradNorm !== undefined, gradNorm, optimizerStep: this.optimizerStep };
  }

  /** Clip + AdamW over the accumulated gradients (none when no token had a label). */
  private async applyUpdate(): Promise<number | undefined> {
    const tokens = this.accumulatedTokens;
    this.accumulatedMicro = 0;
    this.accumulatedTokens = 0;
    if (tokens === 0) return undefined;
    this.updateSession ??= await this.createSession(buildUpdateGraph(this.params, this.dtype));
    const t = this.optimizerStep + 1;
    const scalar = (x: number): ort.Tensor => this.tensor(this.dtype === 'float64' ? Float64Array.of(x) : Float32Array.of(x), []);
    const feeds: Record<string, ort.Tensor> = {
      learning_rate: scalar(this.options.learningRate ?? 1e-3),
      grad_scale: scalar(1 / tokens),
      bias_correction1: scalar(1 - DEFAULT_ADAMW.beta1 ** t),
      bias_correction2: scalar(1 - DEFAULT_ADAMW.beta2 ** t),
      weight_decay: scalar(this.options.weightDecay ?? 0),
      max_grad_norm: scalar(this.options.maxGradNorm ?? 1),
    };
    this.params.forEach((p, i) => {
      feeds[`param.${p.name}`] = this.tensor(this.values[i] as FloatArray, p.shape);
      feeds[`m.${p.name}`] = this.tensor(this.m[i] as FloatArray, p.shape);
      feeds[`v.${p.name}`] = this.tensor(this.v[i] as FloatArray, p.shape);
      feeds[`grad.${p.name}`] = this.tensor(this.gradSum[i] as FloatArray, p.shape);
    });
    const out = await this.updateSession.run(feeds);
    this.params.forEach((p, i) => {
      (this.values[i] as FloatArray).set(out[`param_out.${p.name}`]?.data as FloatArray);
      (this.m[i] as FloatArray).set(out[`m_out.${p.name}`]?.data as FloatArray);
      (this.v[i] as FloatArray).set(out[`v_out.${p.name}`]?.data as FloatArray);
      (this.gradSum[i] as FloatArray).fill(0);
    });
    this.optimizerStep = t;
    return Number(out[GRAD_NORM]?.data[0]);
  }

  /** Mean loss over the batch's loss tokens; changes nothing. */
  async evaluate(batch: Batch): Promise<{ loss: number; lossTokens: number }> {
    const sessions = await this.sessionsFor(batch);
    const { feeds, tokens } = this.batchFeeds(batch);
    if (tokens === 0) return { loss: NaN, lossTokens: 0 };
    if (sessions.eval === undefined) {
      const { config, weights, lora } = this.options;
      sessions.eval = await this.createSession(buildEvalGraph(config, weights, lora, batch.batchSize, batch.seqLen, this.dtype));
    }
    const out = await sessions.eval.run(feeds);
    return { loss: Number(out[LOSS_SUM]?.data[0]) / tokens, lossTokens: tokens };
  }

  /** The LoRA matrices under PEFT's keys, as float32. */
  adapterTensors(): Map<string, { shape: readonly number[]; data: Float32Array }> {
    const out = new Map<string, { shape: readonly number[]; data: Float32Array }>();
    this.params.forEach((p, i) => out.set(p.peftKey, { shape: p.shape, data: Float32Array.from(this.values[i] as FloatArray) }));
    return out;
  }

  /** Overwrites the LoRA matrices (tests: a non-zero B makes every gradient non-trivial). */
  setParam(name: string, data: ArrayLike<number>): void {
    const i = this.params.findIndex((p) => p.name === name);
    if (i < 0) throw new Error(`no LoRA parameter ${name}`);
    (this.values[i] as FloatArray).set(data);
  }

  getParam(name: string): FloatArray {
    const i = this.params.findIndex((p) => p.name === name);
    if (i < 0) throw new Error(`no LoRA parameter ${name}`);
    return this.values[i] as FloatArray;
  }

  async close(): Promise<void> {
    for (const s of this.shapes.values()) {
      await s.grad.release();
      await s.eval?.release();
    }
    this.shapes.clear();
    await this.updateSession?.release();
    this.updateSession = undefined;
  }
}
