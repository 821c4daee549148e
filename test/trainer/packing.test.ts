import t from 'tap';
import type { Batch } from '../../client/batch.js';
import { LoraSession } from '../../client/trainer/lora-session.js';
import { randomBaseWeights } from '../../client/trainer/base-weights.js';
import { lossTargets } from '../../client/trainer/loss-targets.js';
import { MICRO_CONFIG } from './fixtures.js';

/** One row per entry; each entry lists documents (token arrays) packed left to right, then padding (pad id 7). */
function rows(seqLen: number, layout: number[][][]): Batch {
  const n = layout.length * seqLen;
  const b = { inputIds: new Int32Array(n).fill(7), attentionMask: new Int32Array(n), labels: new Int32Array(n).fill(-100), positionIds: new Int32Array(n), documentIds: new Int32Array(n) };
  let tokenCount = 0;
  layout.forEach((docs, r) => {
    let at = r * seqLen;
    docs.forEach((doc, d) => {
      doc.forEach((tok, p) => {
        b.inputIds[at] = tok;
        b.labels[at] = tok;
        b.attentionMask[at] = 1;
        b.positionIds[at] = p;
        b.documentIds[at] = d + 1;
        at++;
        tokenCount++;
      });
    });
  });
  return { batchSize: layout.length, seqLen, ...b, sampleIndices: [], tokenCount };
}

t.test('shifted labels: next token within one document, never across a document boundary or into padding', async (t) => {
  const lt = lossTargets(rows(8, [[[1, 2, 3], [4, 5]], [[6, 7]]]), MICRO_CONFIG.vocabSize);
  t.same(Array.from(lt.positions), [0, 1, 3, 8], 'row 0: 1→2, 2→3, 4→5 (not 3→4); row 1: 6→7');
  t.same(Array.from(lt.targets), [2, 3, 5, 7]);
  t.same(Array.from(lt.documentIds.slice(0, 8)), [1, 1, 1, 2, 2, 0, 0, 0], 'padding is document 0');
  t.same(Array.from(lt.inputIds.slice(5, 8)), [0, 0, 0], 'pad ids never reach the embedding lookup');
});

t.test('a packed row trains on exactly what its documents would train on alone (attention never crosses documents or reads padding)', async (t) => {
  const session = new LoraSession({ config: MICRO_CONFIG, weights: randomBaseWeights(MICRO_CONFIG, 2), lora: { rank: 2, alpha: 4, targets: ['q_proj', 'v_proj'] }, device: 'cpu', dtype: 'float64' });
  t.teardown(() => session.close());
  for (const p of session.params) if (p.kind === 'B') session.setParam(p.name, Array.from({ length: p.shape[0] * p.shape[1] }, (_, i) => Math.cos(i) * 0.3));
  const a = [3, 14, 15, 9, 2];
  const b = [6, 5, 35, 8, 9, 7];
  const packed = await session.evaluate(rows(12, [[a, b]]));
  const alone = await session.evaluate(rows(12, [[a], [b]]));
  t.equal(packed.lossTokens, alone.lossTokens);
  t.ok(Math.abs(packed.loss - alone.loss) < 1e-12, `packed ${packed.loss} vs one document per row ${alone.loss}`);
  const padded = await session.evaluate(rows(16, [[a], [b]]));
  t.ok(Math.abs(padded.loss - alone.loss) < 1e-12, 'more padding changes nothing');
  const joined = await session.evaluate(rows(12, [[[...a, ...b]]]));
  t.ok(Math.abs(joined.loss - alone.loss) > 1e-6, 'the same tokens as one document do give another loss (the mask matters)');
});
