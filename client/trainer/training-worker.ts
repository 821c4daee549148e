/**
 * Worker-thread side of `OnnxTrainingBackend`: owns the ONNX Runtime sessions, whose `run()` blocks
 * the thread it is called on, so the main thread's event loop (sockets, progress) keeps running
 * during a step. Requests are answered in order: `{ id, ok: true, result }` or
 * `{ id, ok: false, error: { code, message } }`.
 */
import { parentPort } from 'node:worker_threads';
import type { Batch } from '../batch.js';
import { NdpError } from '../../src/protocol/errors.js';
import type { TrainingBackendOptions } from './training-backend.js';
import { LoraSession } from './lora-session.js';
import { describeModel, resolveModelConfig } from './model-config.js';
import { loadCheckpointWeights, randomBaseWeights } from './base-weights.js';
import { resolveDevice } from './devices.js';

/** Hugging Face checkpoints pad the embedding past the tokenizer (Qwen: 151,669 → 151,936); more than this many unused rows means another tokenizer. */
export const MAX_EMBEDDING_PADDING = 1024;

export type WorkerRequest =
  | { id: number; type: 'init'; options: TrainingBackendOptions & { verbosePlacement?: boolean } }
  | { id: number; type: 'step' | 'evaluate'; batch: Batch }
  | { id: number; type: 'adapter' }
  | { id: number; type: 'close' };

let session: LoraSession | undefined;

export function checkVocabulary(tokenizerVocab: number | undefined, modelVocab: number): void {
  if (tokenizerVocab === undefined || tokenizerVocab === 0) return;
  if (tokenizerVocab > modelVocab || modelVocab - tokenizerVocab > MAX_EMBEDDING_PADDING) {
    throw new NdpError('NDP_ERR_VOCAB_MISMATCH', `the data's tokenizer has ${tokenizerVocab} tokens but the model's vocabulary has ${modelVocab} rows: train with the model the data was tokenized for`);
  }
}

async function handle(req: WorkerRequest): Promise<unknown> {
  switch (req.type) {
    case 'init': {
      const o = req.options;
      const config = resolveModelConfig(o.model);
      checkVocabulary(o.tokenizerVocabSize, config.vocabSize);
      const { device, notes } = await resolveDevice(o.device);
      const weights = config.checkpointDir !== undefined ? loadCheckpointWeights(config, config.checkpointDir) : randomBaseWeights(config, o.seed);
      session = new LoraSession({
        config,
        weights,
        lora: { rank: o.loraRank, alpha: o.loraAlpha, targets: o.targetModules },
        device,
        learningRate: o.learningRate,
        weightDecay: o.weightDecay,
        maxGradNorm: o.maxGradNorm,
        gradAccum: o.gradAccum,
        seed: o.seed,
        verbosePlacement: o.verbosePlacement,
      });
      const trainable = session.params.reduce((s, p) => s + p.shape[0] * p.shape[1], 0);
      return { device, model: describeModel(config), vocabSize: config.vocabSize, trainableParameters: trainable, notes };
    }
    case 'step': {
      const started = performance.now();
      const r = await live().microStep(req.batch);
      return { ...r, computeMs: performance.now() - started };
    }
    case 'evaluate':
      return live().evaluate(req.batch);
    case 'adapter':
      return [...live().adapterTensors()];
    case 'close':
      await session?.close();
      session = undefined;
      return undefined;
  }
}

function live(): LoraSession {
  if (session === undefined) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', 'training backend used before init');
  return session;
}

const port = parentPort;
if (port !== null) {
  // One request at a time, in arrival order: the backend's calls are sequential by contract.
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (req: WorkerRequest) => {
    queue = queue.then(async () => {
      try {
        port.postMessage({ id: req.id, ok: true, result: await handle(req) });
      } catch (err) {
        const e = err as { code?: string; message?: string };
        port.postMessage({ id: req.id, ok: false, error: { code: e.code, message: e.message ?? String(err) } });
      }
    });
  });
}
