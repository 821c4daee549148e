/**
 * The backward rule of each op the graph builder emits. A rule receives the forward node and the
 * gradient of its (first) output and returns one gradient per input (`undefined` where an input
 * takes none, e.g. indices). Rules emit ordinary forward ops into the same graph, so the backward
 * graph runs on every execution provider that runs the forward one.
 */
import { fmt, type Graph, type GraphNode, type Shape, type Value } from './graph.js';

/**
 * `wants[i]` says whether input i needs a gradient: a rule builds nothing for the others (ONNX
 * Runtime does not prune unused nodes, so a dead gradient would still run every step).
 */
export type GradientRule = (g: Graph, node: GraphNode, gradOut: Value, wants: readonly boolean[]) => (Value | undefined)[];

/** Builds input i's gradient only if it is wanted. */
function only(wants: readonly boolean[], i: number, build: () => Value): Value | undefined {
  return wants[i] === true ? build() : undefined;
}

function in0(node: GraphNode, i: number): Value {
  const v = node.inputs[i];
  if (v === undefined) throw new Error(`${node.op}: missing input ${i}`);
  return v;
}
function out0(node: GraphNode): Value {
  const v = node.outputs[0];
  if (v === undefined) throw new Error(`${node.op}: missing output`);
  return v;
}
function attrInt(node: GraphNode, name: string, fallback: number): number {
  const a = node.attrs[name];
  return a?.kind === 'int' ? a.value : fallback;
}
function attrInts(node: GraphNode, name: string): readonly number[] {
  const a = node.attrs[name];
  if (a?.kind !== 'ints') throw new Error(`${node.op}: attribute ${name} missing`);
  return a.value;
}
function constInts(g: Graph, v: Value): number[] {
  const init = g.initializers.get(v.name);
  if (init === undefined) throw new Error(`${v.name} is not a constant`);
  return Array.from(init.data as ArrayLike<number | bigint>, (x) => Number(x));
}

/** Sums a broadcast gradient back to the shape of the operand that was broadcast. */
export function sumToShape(g: Graph, grad: Value, target: Shape): Value {
  const lead = grad.shape.length - target.length;
  const axes: number[] = [];
  for (let i = 0; i < grad.shape.length; i++) {
    if (i < lead) axes.push(i);
    else if (target[i - lead] === 1 && grad.shape[i] !== 1) axes.push(i);
  }
  if (axes.length === 0) return grad;
  const summed = g.reduceSum(grad, axes, true);
  return lead > 0 ? g.reshape(summed, target) : summed;
}

/** A reduced value reshaped to the input's rank (reduced axes of size 1), ready to broadcast. */
function keptDims(g: Graph, v: Value, input: Value, axes: readonly number[]): Value {
  const rank = input.shape.length;
  if (v.shape.length === rank) return v;
  const set = new Set(axes.map((a) => (a < 0 ? a + rank : a)));
  return g.reshape(v, input.shape.map((d, i) => (set.has(i) ? 1 : d)));
}

/** Brings a reduced gradient (kept or dropped dims) back to the input shape. */
function unreduce(g: Graph, grad: Value, input: Value, axes: readonly number[]): Value {
  const rank = input.shape.length;
  const set = new Set(axes.map((a) => (a < 0 ? a + rank : a)));
  const kept = input.shape.map((d, i) => (set.has(i) ? 1 : d));
  const reshaped = grad.shape.length === rank ? grad : g.reshape(grad, kept);
  if (input.shape.every((d) => typeof d === 'number')) return g.expand(reshaped, input.shape as number[]);
  return g.expandLike(reshaped, input);
}

function swapLast(g: Graph, v: Value): Value {
  const r = v.shape.length;
  const perm = [...Array(r).keys()];
  perm[r - 1] = r - 2;
  perm[r - 2] = r - 1;
  return g.transpose(v, perm);
}

/** dA = G·Bᵀ, dB = Aᵀ·G, folding broadcast batch dims of a rank-2 operand into the product. */
const matMul: GradientRule = (g, node, dy, wants) => {
  const a = in0(node, 0);
  const b = in0(node, 1);
  if (b.shape.length === 2 && a.shape.length > 2) {
    const k = a.shape[a.shape.length - 1] as number;
    const n = b.shape[1] as number;
    return [
      only(wants, 0, () => g.matmul(dy, g.transpose(b, [1, 0]))),
      only(wants, 1, () => g.matmul(g.transpose(g.reshape(a, [-1, k]), [1, 0]), g.reshape(dy, [-1, n]))),
    ];
  }
  return [only(wants, 0, () => sumToShape(g, g.matmul(dy, swapLast(g, b)), a.shape)), only(wants, 1, () => sumToShape(g, g.matmul(swapLast(g, a), dy), b.shape))];
};

export const GRADIENT_RULES: Readonly<Record<string, GradientRule>> = {
  Identity: (_g, _n, dy) => [dy],
  Add: (g, n, dy, w) => [only(w, 0, () => sumToShape(g, dy, in0(n, 0).shape)), only(w, 1, () => sumToShape(g, dy, in0(n, 1).shape))],
  Sub: (g, n, dy, w) => [only(w, 0, () => sumToShape(g, dy, in0(n, 0).shape)), only(w, 1, () => sumToShape(g, g.neg(dy), in0(n, 1).shape))],
  Mul: (g, n, dy, w) => [only(w, 0, () => sumToShape(g, g.mul(dy, in0(n, 1)), in0(n, 0).shape)), only(w, 1, () => sumToShape(g, g.mul(dy, in0(n, 0)), in0(n, 1).shape))],
  Div: (g, n, dy, w) => {
    const b = in0(n, 1);
    return [only(w, 0, () => sumToShape(g, g.div(dy, b), in0(n, 0).shape)), only(w, 1, () => sumToShape(g, g.neg(g.mul(g.div(dy, b), out0(n))), b.shape))];
  },
  Neg: (g, _n, dy) => [g.neg(dy)],
  Exp: (g, n, dy) => [g.mul(dy, out0(n))],
  Log: (g, n, dy) => [g.div(dy, in0(n, 0))],
  Sqrt: (g, n, dy) => [g.div(g.mul(dy, g.scalar(0.5)), out0(n))],
  Reciprocal: (g, n, dy) => {
    const y = out0(n);
    return [g.neg(g.mul(dy, g.mul(y, y)))];
  },
  Sigmoid: (g, n, dy) => {
    const y = out0(n);
    return [g.mul(dy, g.mul(y, g.sub(g.scalar(1), y)))];
  },
  MatMul: matMul,
  Gemm: (g, n, dy, w) => {
    if (attrInt(n, 'transB', 0) !== 1 || attrInt(n, 'transA', 0) !== 0) throw new Error('Gemm gradient: only transB=1');
    // y = a·bᵀ with a [M,K], b [N,K]: da = dy·b, db = dyᵀ·a.
    return [only(w, 0, () => g.matmul(dy, in0(n, 1))), only(w, 1, () => g.matmul(g.transpose(dy, [1, 0]), in0(n, 0)))];
  },
  ReduceSum: (g, n, dy) => [unreduce(g, dy, in0(n, 0), constInts(g, in0(n, 1))), undefined],
  ReduceMean: (g, n, dy) => {
    const x = in0(n, 0);
    const axes = attrInts(n, 'axes');
    const count = axes.reduce((p, a) => p * (x.shape[a < 0 ? a + x.shape.length : a] as number), 1);
    return [unreduce(g, g.div(dy, g.scalar(count)), x, axes)];
  },
  ReduceLogSumExp: (g, n, dy) => {
    // d/dx log Σ exp(x) = softmax(x) = exp(x − lse).
    const x = in0(n, 0);
    const axes = attrInts(n, 'axes');
    // Kept-dims shapes broadcast against x: no [M, vocab] expansion of lse or dy.
    return [g.mul(keptDims(g, dy, x, axes), g.exp(g.sub(x, keptDims(g, out0(n), x, axes))))];
  },
    Softmax: (g, n, dy) => {
    const y = out0(n);
    const axis = attrInt(n, 'axis', -1);
    return [g.mul(y, g.sub(dy, g.reduceSum(g.mul(dy, y), [axis], true)))];
  },
  Transpose: (g, n, dy) => {
    const perm = attrInts(n, 'perm');
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [g.transpose(dy, inverse)];
  },
  Reshape: (g, n, dy) => [g.reshape(dy, in0(n, 0).shape), undefined],
  Unsqueeze: (g, n, dy) => [g.reshape(dy, in0(n, 0).shape), undefined],
  Expand: (g, n, dy) => [sumToShape(g, dy, in0(n, 0).shape), undefined],
  Concat: (g, n, dy, w) => {
    const axis = attrInt(n, 'axis', 0);
    let start = 0;
    return n.inputs.map((x, i) => {
      const len = x.shape[axis] as number;
      const from = start;
      start += len;
      return only(w, i, () => g.slice(dy, axis, from, from + len));
    });
  },
  Slice: (g, n, dy) => {
    const x = in0(n, 0);
    const [start] = constInts(g, in0(n, 1));
    const [axis] = constInts(g, in0(n, 3));
    if (start === undefined || axis === undefined) throw new Error('Slice gradient: bad constants');
    const end = start + (dy.shape[axis] as number);
    const size = x.shape[axis] as number;
    const parts: Value[] = [];
    const zerosOf = (len: number): Value => g.zeros(x.shape.map((d, i) => (i === axis ? len : d)), x.dtype);
    if (start > 0) parts.push(zerosOf(start));
    parts.push(dy);
    if (end < size) parts.push(zerosOf(size - end));
    return [parts.length === 1 ? dy : g.concat(parts, axis), undefined, undefined, undefined];
  },
  Gather: (g, n, dy) => {
    // Rows picked by distinct indices (loss positions) scatter back; repeated indices would need a
    // summing scatter, which ONNX Runtime's WebGPU EP lacks, so the model only gathers distinct rows.
    const data = in0(n, 0);
    const idx = in0(n, 1);
    if (idx.shape.length !== 1 || data.shape.length !== 2) throw new Error(`Gather gradient: only 1-D indices into 2-D data, got ${fmt(idx.shape)} into ${fmt(data.shape)}`);
    const idx2 = g.expandLike(g.unsqueeze(idx, [1]), dy);
    const grad = g.scatterElements(g.zeros(data.shape, data.dtype), idx2, dy, 0);
    g.sparseGradients.set(grad.name, { indices: idx2, updates: dy, axis: 0 });
    return [grad, undefined];
  },
  GatherElements: (g, n, dy) => {
    const data = in0(n, 0);
    const idx = in0(n, 1);
    const axis = attrInt(n, 'axis', 0);
    const zeros = data.shape.every((d) => typeof d === 'number') ? g.zeros(data.shape, data.dtype) : g.mul(data, g.scalar(0, data.dtype));
    const grad = g.scatterElements(zeros, idx, dy, axis);
    // One index per slice along `axis` cannot repeat, so the scatter can add onto a dense gradient.
    if (idx.shape[axis < 0 ? axis + idx.shape.length : axis] === 1) g.sparseGradients.set(grad.name, { indices: idx, updates: dy, axis });
    return [grad, undefined];
  },
  Where: (g, n, dy, w) => {
    const cond = in0(n, 0);
    const zero = g.scalar(0, dy.dtype);
    return [undefined, only(w, 1, () => sumToShape(g, g.where(cond, dy, zero), in0(n, 1).shape)), only(w, 2, () => sumToShape(g, g.where(cond, zero, dy), in0(n, 2).shape))];
  },
};
