/**
 * Reverse-mode differentiation over a `Graph`: walks the nodes between the chosen parameters and a
 * scalar loss backwards, applying each op's rule from gradient-rules.ts and summing the gradients of
 * values used more than once. Only nodes on a path parameter → loss are differentiated, so the
 * frozen base weights cost no weight gradients.
 */
import type { Graph, GraphNode, SparseScatter, Value } from './graph.js';
import { GRADIENT_RULES } from './gradient-rules.js';

/**
 * Appends the backward graph of `loss` (a scalar or a one-element tensor) with respect to `params`
 * to `graph` and returns the gradient value for each parameter (a zero tensor when the loss does not
 * depend on it).
 */
export function gradients(graph: Graph, loss: Value, params: readonly Value[]): Map<string, Value> {
  const forward = [...graph.nodes];
  const dependsOnParam = new Set(params.map((p) => p.name));
  for (const node of forward) {
    if (!node.stopGradient && node.inputs.some((i) => dependsOnParam.has(i.name))) {
      for (const o of node.outputs) dependsOnParam.add(o.name);
    }
  }
  const reachesLoss = new Set([loss.name]);
  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i] as GraphNode;
    if (node.outputs.some((o) => reachesLoss.has(o.name))) for (const inp of node.inputs) reachesLoss.add(inp.name);
  }

  const pending = new Map<string, Value[]>();
  const seed = graph.constant(new Array<number>(loss.shape.length === 0 ? 1 : (loss.shape as number[]).reduce((a, b) => a * b, 1)).fill(1), loss.shape, loss.dtype);
  pending.set(loss.name, [seed]);
  const total = (name: string): Value | undefined => {
    const parts = pending.get(name);
    if (parts === undefined || parts.length === 0) return undefined;
    // A scatter into zeros (the gradient of a gather) is added by scattering onto the dense sum
    // instead: one pass over the tensor instead of three (zeros, scatter, add).
    const sparse = parts.filter((p) => graph.sparseGradients.has(p.name));
    const dense = parts.filter((p) => !graph.sparseGradients.has(p.name));
    let sum = dense[0];
    for (const p of dense.slice(1)) sum = graph.add(sum as Value, p);
    for (const p of sparse) {
      const s = graph.sparseGradients.get(p.name) as SparseScatter;
      sum = sum === undefined ? p : graph.scatterElements(sum, s.indices, graph.add(graph.gatherElements(sum, s.indices, s.axis), s.updates), s.axis);
    }
    pending.set(name, [sum as Value]);
    return sum;
  };

  for (let i = forward.length - 1; i >= 0; i--) {
    const node = forward[i] as GraphNode;
    if (node.stopGradient) continue;
    const out = node.outputs[0];
    if (out === undefined || !dependsOnParam.has(out.name) || !reachesLoss.has(out.name)) continue;
    const dy = total(out.name);
    if (dy === undefined) continue;
    const rule = GRADIENT_RULES[node.op];
    if (rule === undefined) throw new Error(`no gradient rule for ${node.op} (output ${out.name})`);
    const grads = rule(graph, node, dy, node.inputs.map((inp) => dependsOnParam.has(inp.name)));
    node.inputs.forEach((inp, k) => {
      const gk = grads[k];
      if (gk === undefined || !dependsOnParam.has(inp.name)) return;
      const list = pending.get(inp.name) ?? [];
      list.push(gk);
      pending.set(inp.name, list);
    });
  }

  const result = new Map<string, Value>();
  for (const p of params) {
    const gp = total(p.name) ?? graph.zeros(p.shape, p.dtype);
    result.set(p.name, gp);
  }
  return result;
}
