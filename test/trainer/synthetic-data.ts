/**
 * A synthetic corpus with structure a LoRA adapter can learn: each sample walks a fixed random
 * successor table over a few hundred token ids spread across the Qwen3 vocabulary, so the next
 * token is predictable from the current one. Written as a real .ndp file.
 */
import { NdpFileWriter } from '../../src/dataset/ndp-file-writer.js';
import { seededRandom } from '../../client/trainer/base-weights.js';
import { QWEN3_VOCAB_SIZE } from '../../client/trainer/model-config.js';

export async function writeSyntheticNdp(path: string, options: { samples: number; minLength: number; maxLength: number; seed: number; alphabet?: number; vocabSize?: number; tableSeed?: number }): Promise<void> {
  const vocab = options.vocabSize ?? QWEN3_VOCAB_SIZE;
  const alphabetSize = options.alphabet ?? 64;
  // The successor table depends on tableSeed only, so train and held-out files share the language.
  const table = seededRandom(options.tableSeed ?? 99);
  const alphabet = Array.from({ length: alphabetSize }, () => Math.floor(table() * vocab));
  const next = alphabet.map(() => Math.floor(table() * alphabetSize));
  const rand = seededRandom(options.seed);
  const writer = await NdpFileWriter.create(path, { name: 'synthetic', tokenizer: { name: 'synthetic', hash: '', vocabSize: vocab } });
  for (let s = 0; s < options.samples; s++) {
    const length = options.minLength + Math.floor(rand() * (options.maxLength - options.minLength + 1));
    const tokens = new Int32Array(length);
    let state = Math.floor(rand() * alphabetSize);
    for (let t = 0; t < length; t++) {
      tokens[t] = alphabet[state] as number;
      state = next[state] as number;
    }
    const lossMask = new Uint8Array(length).fill(1);
    lossMask[0] = 0;
    await writer.append({ tokens, lossMask });
  }
  await writer.finish();
}
