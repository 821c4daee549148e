/**
 * A typed ONNX graph builder with static shape inference. Shapes are known when the graph is built
 * (a training run fixes batch and sequence length), except dimensions named by a string (e.g. the
 * number of loss positions `M`), which stay symbolic in the ONNX graph. Every op records enough
 * (type, inputs, attributes, shapes) for `gradients()` (autodiff.ts) to emit its backward rule.
 */

export type DType = 'float32' | 'float64' | 'int32' | 'int64' | 'bool';
export type FloatDType = 'float32' | 'float64';
export type Dim = number | string;
export type Shape = readonly Dim[];

export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export interface Value {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
}

export type AttrValue =
  | { readonly kind: 'int'; readonly value: number }
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'ints'; readonly value: readonly number[] }
  | { readonly kind: 'string'; readonly value: string };

export interface GraphNode {
  readonly op: string;
  readonly inputs: readonly Value[];
  readonly outputs: readonly Value[];
  readonly attrs: Readonly<Record<string, AttrValue>>;
  /** Set on Identity nodes made by `stopGradient`: the backward pass treats the output as constant. */
  readonly stopGradient?: boolean;
}

export interface Initializer {
  readonly value: Value;
  readonly data: TensorData;
}

export const int = (value: number): AttrValue => ({ kind: 'int', value });
/** Float attributes are tagged explicitly: `1.0` is an integer in JS, and ONNX would read it as INT. */
export const float = (value: number): AttrValue => ({ kind: 'float', value });
export const ints = (value: readonly number[]): AttrValue => ({ kind: 'ints', value });

function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number') throw new Error(`shape ${fmt(shape)} has a symbolic dimension`);
    n *= d;
  }
  return n;
}

export function fmt(shape: Shape): string {
  return `[${shape.join(',')}]`;
}

function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** Numpy-style broadcast of two shapes (symbolic dims must match by name). */
export function broadcastShapes(a: Shape, b: Shape): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da === 1) out.push(db);
    else if (db === 1 || da === db) out.push(da);
    else throw new Error(`cannot broadcast ${fmt(a)} with ${fmt(b)}`);
  }
  return out;
}

/** A gradient that is `updates` scattered into zeros at distinct `indices`: autodiff adds it to a dense gradient by scattering, not by a dense add. */
export interface SparseScatter {
  readonly indices: Value;
  readonly updates: Value;
  readonly axis: number;
}

export class Graph {
  readonly nodes: GraphNode[] = [];
  /** Sparse gradients by value name (see SparseScatter). */
  readonly sparseGradients = new Map<string, SparseScatter>();
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly initializers = new Map<string, Initializer>();
  private counter = 0;
  private readonly constantCache = new Map<string, Value>();

  /** `floatType` is the dtype of activations and of the scalars `scalar()` makes. */
  constructor(readonly floatType: FloatDType = 'float32') {}

  private fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  input(name: string, dtype: DType, shape: Shape): Value {
    const v = { name, dtype, shape };
    this.inputs.push(v);
    return v;
  }

  output(v: Value, name?: string): Value {
    if (name !== undefined && name !== v.name) {
      v = this.identity(v, name);
    }
    this.outputs.push(v);
    return v;
  }

  initializer(name: string, data: TensorData, shape: Shape, dtype?: DType): Value {
    const t = dtype ?? dtypeOf(data);
    if (numel(shape) !== data.length) throw new Error(`initializer ${name}: ${data.length} values for shape ${fmt(shape)}`);
    const value = { name, dtype: t, shape };
    this.initializers.set(name, { value, data });
    return value;
  }

  /** A scalar constant in `dtype` (the graph float type by default); shared across uses. */
  scalar(x: number, dtype: DType = this.floatType): Value {
    return this.constant([x], [], dtype);
  }

  /** A small constant tensor (shape inputs, axes, masks); shared across identical uses. */
  constant(values: readonly number[], shape: Shape, dtype: DType): Value {
    const key = `${dtype}|${fmt(shape)}|${values.join(',')}`;
    const hit = this.constantCache.get(key);
    if (hit !== undefined) return hit;
    const v = this.initializer(this.fresh('const'), makeData(dtype, values), shape, dtype);
    this.constantCache.set(key, v);
    return v;
  }

  /** A zero-filled tensor of a static shape. */
  zeros(shape: Shape, dtype: DType = this.floatType): Value {
    const key = `zeros|${dtype}|${fmt(shape)}`;
    const hit = this.constantCache.get(key);
    if (hit !== undefined) return hit;
    const v = this.initializer(this.fresh('zeros'), zeroData(dtype, numel(shape)), shape, dtype);
    this.constantCache.set(key, v);
    return v;
  }

  /** Low-level: appends a node; the caller supplies output dtypes and shapes. */
  node(op: string, inputs: readonly Value[], outs: readonly { dtype: DType; shape: Shape }[], attrs: Record<string, AttrValue> = {}, name?: string): Value[] {
    const outputs = outs.map((o, i) => ({ name: name !== undefined && i === 0 ? name : this.fresh(op), dtype: o.dtype, shape: o.shape }));
    this.nodes.push({ op, inputs, outputs, attrs });
    return outputs;
  }

  private one(op: string, inputs: readonly Value[], dtype: DType, shape: Shape, attrs: Record<string, AttrValue> = {}, name?: string): Value {
    const [v] = this.node(op, inputs, [{ dtype, shape }], attrs, name);
    return v as Value;
  }

  // --- elementwise -------------------------------------------------------------------------------

  private binary(op: string, a: Value, b: Value, dtype?: DType): Value {
    if (a.dtype !== b.dtype) throw new Error(`${op}: dtype ${a.dtype} vs ${b.dtype}`);
    return this.one(op, [a, b], dtype ?? a.dtype, broadcastShapes(a.shape, b.shape));
  }
  add(a: Value, b: Value): Value { return this.binary('Add', a, b); }
  sub(a: Value, b: Value): Value { return this.binary('Sub', a, b); }
  mul(a: Value, b: Value): Value { return this.binary('Mul', a, b); }
  div(a: Value, b: Value): Value { return this.binary('Div', a, b); }
  equal(a: Value, b: Value): Value { return this.binary('Equal', a, b, 'bool'); }
  lessOrEqual(a: Value, b: Value): Value { return this.binary('LessOrEqual', a, b, 'bool'); }
  greater(a: Value, b: Value): Value { return this.binary('Greater', a, b, 'bool'); }
  and(a: Value, b: Value): Value { return this.binary('And', a, b, 'bool'); }
  min(a: Value, b: Value): Value { return this.binary('Min', a, b); }

  private unary(op: string, x: Value, name?: string): Value { return this.one(op, [x], x.dtype, x.shape, {}, name); }
  neg(x: Value): Value { return this.unary('Neg', x); }
  exp(x: Value): Value { return this.unary('Exp', x); }
  log(x: Value): Value { return this.unary('Log', x); }
  sqrt(x: Value): Value { return this.unary('Sqrt', x); }
  reciprocal(x: Value): Value { return this.unary('Reciprocal', x); }
  sigmoid(x: Value): Value { return this.unary('Sigmoid', x); }
  cos(x: Value): Value { return this.unary('Cos', x); }
  sin(x: Value): Value { return this.unary('Sin', x); }
  identity(x: Value, name?: string): Value { return this.unary('Identity', x, name); }

  /** Identity whose output the backward pass treats as a constant (e.g. the log-sum-exp shift, whose gradient cancels exactly). */
  stopGradient(x: Value): Value {
    const out = { name: this.fresh('StopGradient'), dtype: x.dtype, shape: x.shape };
    this.nodes.push({ op: 'Identity', inputs: [x], outputs: [out], attrs: {}, stopGradient: true });
    return out;
  }

  cast(x: Value, to: DType): Value {
    return this.one('Cast', [x], to, x.shape, { to: int(ONNX_DTYPE[to]) });
  }

  where(cond: Value, a: Value, b: Value): Value {
    const shape = broadcastShapes(cond.shape, broadcastShapes(a.shape, b.shape));
    return this.one('Where', [cond, a, b], a.dtype, shape);
  }

  // --- linear algebra ----------------------------------------------------------------------------

  matmul(a: Value, b: Value): Value {
    if (a.shape.length < 2 || b.shape.length < 2) throw new Error('MatMul: operands of rank ≥ 2 only');
    const [m, k] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (k !== k2) throw new Error(`MatMul: ${fmt(a.shape)} × ${fmt(b.shape)}`);
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return this.one('MatMul', [a, b], a.dtype, [...batch, m as Dim, n as Dim]);
  }

  /** `a · bᵀ` for 2-D `a` [M,K] and `b` [N,K] (weights kept in Hugging Face's [out, in] layout). */
  matmulTransB(a: Value, b: Value): Value {
    const [m, k] = a.shape;
    const [n, k2] = b.shape;
    if (a.shape.length !== 2 || b.shape.length !== 2 || k !== k2) throw new Error(`Gemm: ${fmt(a.shape)} × ${fmt(b.shape)}ᵀ`);
    return this.one('Gemm', [a, b], a.dtype, [m as Dim, n as Dim], { transB: int(1) });
  }

  // --- reductions --------------------------------------------------------------------------------

  private reduceShape(x: Value, axes: readonly number[], keepDims: boolean): Dim[] {
    const rank = x.shape.length;
    const set = new Set(axes.map((a) => normAxis(a, rank)));
    const out: Dim[] = [];
    x.shape.forEach((d, i) => {
      if (!set.has(i)) out.push(d);
      else if (keepDims) out.push(1);
    });
    return out;
  }

  /** ReduceSum (axes as an input since opset 13). */
  reduceSum(x: Value, axes: readonly number[], keepDims = true): Value {
    const axesValue = this.constant(axes, [axes.length], 'int64');
    return this.one('ReduceSum', [x, axesValue], x.dtype, this.reduceShape(x, axes, keepDims), { keepdims: int(keepDims ? 1 : 0) });
  }
  /** ReduceMean / ReduceMax (axes as an attribute up to opset 17). */
  reduceMean(x: Value, axes: readonly number[], keepDims = true): Value {
    return this.one('ReduceMean', [x], x.dtype, this.reduceShape(x, axes, keepDims), { axes: ints(axes), keepdims: int(keepDims ? 1 : 0) });
  }
  reduceMax(x: Value, axes: readonly number[], keepDims = true): Value {
    return this.one('ReduceMax', [x], x.dtype, this.reduceShape(x, axes, keepDims), { axes: ints(axes), keepdims: int(keepDims ? 1 : 0) });
  }

  /** log Σ exp(x) over `axes`, computed stably by ONNX Runtime (axes as an attribute up to opset 17). */
  reduceLogSumExp(x: Value, axes: readonly number[], keepDims = true): Value {
    return this.one('ReduceLogSumExp', [x], x.dtype, this.reduceShape(x, axes, keepDims), { axes: ints(axes), keepdims: int(keepDims ? 1 : 0) });
  }

    softmax(x: Value, axis = -1): Value {
    return this.one('Softmax', [x], x.dtype, x.shape, { axis: int(axis) });
  }

  // --- shape ops ---------------------------------------------------------------------------------

  transpose(x: Value, perm: readonly number[]): Value {
    const shape = perm.map((p) => x.shape[p] as Dim);
    return this.one('Transpose', [x], x.dtype, shape, { perm: ints(perm) });
  }

  /** Reshape to a static target (−1 allowed once; symbolic dims pass through as 0 = "copy"). */
  reshape(x: Value, shape: Shape): Value {
    const known = x.shape.every((d) => typeof d === 'number');
    let resolved: Dim[] = [...shape];
    const spec = shape.map((d, i) => {
      if (typeof d === 'string') {
        if (x.shape[i] !== d) throw new Error(`Reshape: symbolic dim ${d} must stay at its axis`);
        return 0;
      }
      return d;
    });
    const minus = shape.indexOf(-1);
    if (minus >= 0) {
      if (!known) throw new Error('Reshape: -1 needs a static input shape');
      const rest = shape.reduce<number>((p, d, i) => (i === minus ? p : p * (d as number)), 1);
      resolved = shape.map((d, i) => (i === minus ? numel(x.shape) / rest : d));
    } else if (known && numel(x.shape) !== numel(shape)) {
      throw new Error(`Reshape: ${fmt(x.shape)} → ${fmt(shape)}`);
    }
    return this.one('Reshape', [x, this.constant(spec, [spec.length], 'int64')], x.dtype, resolved);
  }

  /** Broadcast to a static shape. */
  expand(x: Value, shape: readonly number[]): Value {
    const out = broadcastShapes(x.shape, shape);
    return this.one('Expand', [x, this.constant(shape, [shape.length], 'int64')], x.dtype, out);
  }

  /** Broadcast to the runtime shape of `like` (for symbolic dims). */
  expandLike(x: Value, like: Value): Value {
    const shapeValue = this.one('Shape', [like], 'int64', [like.shape.length]);
    return this.one('Expand', [x, shapeValue], x.dtype, broadcastShapes(x.shape, like.shape));
  }

  concat(xs: readonly Value[], axis: number): Value {
    const first = xs[0];
    if (first === undefined) throw new Error('Concat of nothing');
    const a = normAxis(axis, first.shape.length);
    const shape = [...first.shape];
    shape[a] = xs.reduce((s, x) => s + (x.shape[a] as number), 0);
    return this.one('Concat', xs, first.dtype, shape, { axis: int(a) });
  }

  /** Slice `[start, end)` along one axis, step 1. */
  slice(x: Value, axis: number, start: number, end: number): Value {
    const a = normAxis(axis, x.shape.length);
    const shape = [...x.shape];
    shape[a] = end - start;
    return this.one('Slice', [x, this.constant([start], [1], 'int64'), this.constant([end], [1], 'int64'), this.constant([a], [1], 'int64')], x.dtype, shape);
  }

  unsqueeze(x: Value, axes: readonly number[]): Value {
    const shape: Dim[] = [...x.shape];
    for (const a of [...axes].sort((p, q) => p - q)) shape.splice(a, 0, 1);
    return this.one('Unsqueeze', [x, this.constant(axes, [axes.length], 'int64')], x.dtype, shape);
  }

  // --- indexing ----------------------------------------------------------------------------------

  /** Gather along axis 0 (embedding lookup, picking rows). */
  gather(data: Value, indices: Value): Value {
    return this.one('Gather', [data, indices], data.dtype, [...indices.shape, ...data.shape.slice(1)], { axis: int(0) });
  }

  gatherElements(data: Value, indices: Value, axis: number): Value {
    return this.one('GatherElements', [data, indices], data.dtype, indices.shape, { axis: int(axis) });
  }

  scatterElements(data: Value, indices: Value, updates: Value, axis: number): Value {
    return this.one('ScatterElements', [data, indices, updates], data.dtype, data.shape, { axis: int(axis) });
  }

  /** All tensors this graph reads: inputs and initializers. */
  isSource(v: Value): boolean {
    return this.initializers.has(v.name) || this.inputs.some((i) => i.name === v.name);
  }
}

export const ONNX_DTYPE: Record<DType, number> = { float32: 1, int32: 6, int64: 7, bool: 9, float64: 11 };

export function dtypeOf(data: TensorData): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  return 'bool';
}

export function makeData(dtype: DType, values: readonly number[]): TensorData {
  switch (dtype) {
    case 'float32': return Float32Array.from(values);
    case 'float64': return Float64Array.from(values);
    case 'int32': return Int32Array.from(values);
    case 'int64': return BigInt64Array.from(values.map((v) => BigInt(v)));
    case 'bool': return Uint8Array.from(values);
  }
}

export function zeroData(dtype: DType, length: number): TensorData {
  switch (dtype) {
    case 'float32': return new Float32Array(length);
    case 'float64': return new Float64Array(length);
    case 'int32': return new Int32Array(length);
    case 'int64': return new BigInt64Array(length);
    case 'bool': return new Uint8Array(length);
  }
}

export { numel };
