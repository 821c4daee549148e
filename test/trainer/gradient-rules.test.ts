import t from 'tap';
import ort from 'onnxruntime-node';
import { checkGradient } from './gradient-check.js';
import type { Graph, Value } from '../../client/trainer/graph.js';
import { gradients } from '../../client/trainer/autodiff.js';

/** loss = Σ f(x) ⊙ R with a fixed random R, so every output element's gradient matters. */
function weighted(g: Graph, y: Value): Value {
  const n = (y.shape as number[]).reduce((a, b) => a * b, 1);
  const r = Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + 1) * 0.9);
  return g.reduceSum(g.mul(y, g.constant(r, y.shape, 'float64')), [...y.shape.keys()], false);
}

type Unary = (g: Graph, xs: Value[]) => Value;
const positive = (p: Value, rand: () => number): Float64Array => Float64Array.from({ length: (p.shape as number[]).reduce((a, b) => a * b, 1) }, () => 0.5 + rand());

const cases: [string, number[][], Unary, ((p: Value, rand: () => number) => Float64Array)?][] = [
  ['Add broadcast', [[2, 3, 4], [4]], (g, [a, b]) => g.add(a!, b!)],
  ['Add broadcast middle', [[2, 3, 4], [2, 1, 4]], (g, [a, b]) => g.add(a!, b!)],
  ['Sub', [[3, 4], [1, 4]], (g, [a, b]) => g.sub(a!, b!)],
  ['Mul broadcast', [[2, 3, 4], [3, 1]], (g, [a, b]) => g.mul(a!, b!)],
  ['Div', [[3, 4], [3, 4]], (g, [a, b]) => g.div(a!, b!), positive],
  ['Neg', [[5]], (g, [a]) => g.neg(a!)],
  ['Exp', [[2, 3]], (g, [a]) => g.exp(a!)],
  ['Log', [[2, 3]], (g, [a]) => g.log(a!), positive],
  ['Sqrt', [[2, 3]], (g, [a]) => g.sqrt(a!), positive],
  ['Reciprocal', [[2, 3]], (g, [a]) => g.reciprocal(a!), positive],
  ['Sigmoid', [[2, 3]], (g, [a]) => g.sigmoid(a!)],
  ['MatMul 2-D', [[3, 4], [4, 5]], (g, [a, b]) => g.matmul(a!, b!)],
  ['MatMul 3-D × 2-D', [[2, 3, 4], [4, 5]], (g, [a, b]) => g.matmul(a!, b!)],
  ['MatMul 4-D batched', [[2, 2, 3, 4], [2, 2, 4, 3]], (g, [a, b]) => g.matmul(a!, b!)],
  ['MatMul batch broadcast', [[2, 3, 4], [1, 4, 2]], (g, [a, b]) => g.matmul(a!, b!)],
  ['Gemm transB', [[3, 4], [5, 4]], (g, [a, b]) => g.matmulTransB(a!, b!)],
  ['ReduceSum keepdims', [[2, 3, 4]], (g, [a]) => g.reduceSum(a!, [1], true)],
  ['ReduceSum drop dims', [[2, 3, 4]], (g, [a]) => g.reduceSum(a!, [0, 2], false)],
  ['ReduceMean', [[2, 3, 4]], (g, [a]) => g.reduceMean(a!, [-1], true)],
  ['Softmax', [[2, 3, 5]], (g, [a]) => g.softmax(a!, -1)],
  ['Transpose', [[2, 3, 4]], (g, [a]) => g.transpose(a!, [2, 0, 1])],
  ['Reshape', [[2, 3, 4]], (g, [a]) => g.reshape(a!, [6, -1])],
  ['Unsqueeze', [[2, 3]], (g, [a]) => g.unsqueeze(a!, [1])],
  ['Expand', [[2, 1, 4]], (g, [a]) => g.expand(a!, [2, 3, 4])],
  ['Concat', [[2, 3], [2, 2]], (g, [a, b]) => g.concat([a!, b!], 1)],
  ['Slice middle', [[2, 6]], (g, [a]) => g.slice(a!, 1, 2, 5)],
  ['Slice head', [[4, 3]], (g, [a]) => g.slice(a!, 0, 0, 2)],
  ['Identity', [[3]], (g, [a]) => g.identity(a!)],
  ['Gather rows', [[5, 3]], (g, [a]) => g.gather(a!, g.constant([4, 0, 2], [3], 'int32'))],
  ['GatherElements', [[3, 4]], (g, [a]) => g.gatherElements(a!, g.constant([1, 3, 0], [3, 1], 'int32'), 1)],
  ['Where', [[2, 3], [2, 3]], (g, [a, b]) => g.where(g.constant([1, 0, 1, 0, 0, 1], [2, 3], 'bool'), a!, b!)],
  ['ReduceLogSumExp', [[3, 5]], (g, [a]) => g.reduceLogSumExp(a!, [1], true)],
  ['ReduceLogSumExp drop dims', [[2, 3, 4]], (g, [a]) => g.reduceLogSumExp(a!, [-1], false)],
  [
    'cross-entropy: logsumexp − gathered target (sparse scatter added onto the dense gradient)',
    [[3, 6]],
    (g, [a]) => g.sub(g.reduceLogSumExp(a!, [1], true), g.gatherElements(a!, g.constant([5, 0, 2], [3, 1], 'int32'), 1)),
  ],
  [
    'a value gathered twice (two sparse gradients, no dense one)',
    [[5, 3]],
    (g, [a]) => g.add(g.gather(a!, g.constant([4, 0], [2], 'int32')), g.gather(a!, g.constant([1, 4], [2], 'int32'))),
  ],
  [
    'log-sum-exp with stopGradient shift (exact)',
    [[3, 6]],
    (g, [a]) => {
      const shift = g.stopGradient(g.reduceMax(a!, [1], true));
      return g.add(g.log(g.reduceSum(g.exp(g.sub(a!, shift)), [1], true)), shift);
    },
  ],
];

for (const [name, shapes, op, init] of cases) {
  t.test(`gradient of ${name} matches finite differences (float64)`, async (t) => {
    const r = await checkGradient({
      build: (g) => {
        const params = shapes.map((s, i) => g.input(`p${i}`, 'float64', s));
        return { params, loss: weighted(g, op(g, params)) };
      },
      init,
    });
    t.ok(r.maxRelError < 1e-6, `max relative error ${r.maxRelError.toExponential(2)} over ${r.directions} directions`);
  });
}

t.test('Gather gradient with a symbolic row count (loss positions)', async (t) => {
  const r = await checkGradient({
    build: (g) => {
      const x = g.input('x', 'float64', [6, 3]);
      const idx = g.input('idx', 'int32', ['M']);
      const picked = g.gather(x, idx);
      const y = g.reduceSum(g.mul(picked, picked), [0, 1], false);
      return { params: [x], loss: y, feeds: { idx: new ort.Tensor('int32', Int32Array.from([5, 1, 3, 0]), [4]) } };
    },
  });
  t.ok(r.maxRelError < 1e-6, `max relative error ${r.maxRelError.toExponential(2)}`);
});

t.test('an op without a gradient rule on the path is refused by name', async (t) => {
  const { Graph } = await import('../../client/trainer/graph.js');
  const g = new Graph('float64');
  const x = g.input('x', 'float64', [3]);
  const y = g.reduceSum(g.cos(x), [0], false);
  t.throws(() => gradients(g, y, [x]), /no gradient rule for Cos/);
});

t.test('a parameter the loss does not depend on gets a zero gradient', async (t) => {
  const { Graph } = await import('../../client/trainer/graph.js');
  const g = new Graph('float64');
  const x = g.input('x', 'float64', [3]);
  const unused = g.input('u', 'float64', [2]);
  const y = g.reduceSum(g.mul(x, x), [0], false);
  const grads = gradients(g, y, [x, unused]);
  t.same(grads.get('u')?.shape, [2]);
});
