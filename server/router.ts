/**
 * The routing table (NDP.md §7.11), applied to every data frame a session produces before its first
 * transmission. Rules match SRC / DST / TYP and act: deliver (stop), drop (stop), set-dst / set-src
 * (rewrite, go on), count (go on), capture (go on). A frame that passes every rule is delivered.
 * Rules come from `--route` flags (`src=CODE_REPO,dst=EMBEDDING,action=set-dst:LORA`) or a JSON
 * `--routes FILE` (an array of `{match: {src?, dst?, typ?}, action, dst?, src?, name?}`).
 */
import { NdpError } from '../src/protocol/errors.js';
import { parseCode } from '../src/protocol/registry.js';

export type RouteAction = 'deliver' | 'drop' | 'set-dst' | 'set-src' | 'count' | 'capture';

export interface RouteRule {
  readonly match: { readonly src?: number; readonly dst?: number; readonly typ?: number };
  readonly action: RouteAction;
  /** New DST for set-dst, new SRC for set-src. */
  readonly value?: number;
  /** Counter label for count (defaults to the rule's index). */
  readonly name?: string;
}

/** What the table decided for one frame. */
export interface RouteDecision {
  readonly deliver: boolean;
  readonly src: number;
  readonly dst: number;
  readonly capture: boolean;
  /** Names of the count rules that matched. */
  readonly counted: readonly string[];
}

const ACTIONS: readonly RouteAction[] = ['deliver', 'drop', 'set-dst', 'set-src', 'count', 'capture'];

function badRoute(message: string): never {
  throw new NdpError('NDP_ERR_BAD_ROUTE', message);
}

function code(table: 'src' | 'dst' | 'typ', value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 255) return value;
  if (typeof value === 'string') {
    try {
      return parseCode(table, value);
    } catch (err) {
      badRoute((err as Error).message);
    }
  }
  return badRoute(`${table} must be a code 0..255 or a registry name, got ${JSON.stringify(value)}`);
}

/** Checks one rule from JSON (codes as numbers or names). */
export function parseRule(raw: unknown, index: number): RouteRule {
  if (typeof raw !== 'object' || raw === null) badRoute(`route ${index} is not an object`);
  const r = raw as { match?: Record<string, unknown>; action?: unknown; dst?: unknown; src?: unknown; name?: unknown };
  if (typeof r.action !== 'string' || !ACTIONS.includes(r.action as RouteAction)) badRoute(`route ${index}: action must be one of ${ACTIONS.join(', ')}`);
  const action = r.action as RouteAction;
  const m = r.match ?? {};
  if (typeof m !== 'object') badRoute(`route ${index}: match must be an object`);
  for (const key of Object.keys(m)) if (!['src', 'dst', 'typ'].includes(key)) badRoute(`route ${index}: match key '${key}' is not src, dst or typ`);
  const match: { src?: number; dst?: number; typ?: number } = {};
  if (m.src !== undefined) match.src = code('src', m.src);
  if (m.dst !== undefined) match.dst = code('dst', m.dst);
  if (m.typ !== undefined) match.typ = code('typ', m.typ);
  const rule: { match: typeof match; action: RouteAction; value?: number; name?: string } = { match, action };
  if (action === 'set-dst') rule.value = code('dst', r.dst);
  if (action === 'set-src') rule.value = code('src', r.src);
  if (action === 'count') rule.name = typeof r.name === 'string' && r.name !== '' ? r.name : `rule${index}`;
  return rule;
}

/** Parses a routes file's JSON text: an array of rules. */
export function parseRoutesJson(text: string): RouteRule[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    badRoute(`routes file is not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(value)) badRoute('routes file must hold a JSON array of rules');
  return value.map((r, i) => parseRule(r, i));
}

/** Parses one `--route` flag: comma-separated `src=X`, `dst=X`, `typ=X`, `action=A[:VALUE]`, `name=N`. */
export function parseRouteFlag(text: string, index: number): RouteRule {
  const raw: { match: Record<string, string>; action?: string; dst?: string; src?: string; name?: string } = { match: {} };
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) badRoute(`--route '${text}': '${part}' is not key=value`);
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 'action') {
      const [action, arg] = value.split(':');
      raw.action = action;
      if (action === 'set-dst') raw.dst = arg;
      if (action === 'set-src') raw.src = arg;
      if (action === 'count' && arg !== undefined) raw.name = arg;
    } else if (key === 'src' || key === 'dst' || key === 'typ') raw.match[key] = value;
    else if (key === 'name') raw.name = value;
    else badRoute(`--route '${text}': unknown key '${key}'`);
  }
  return parseRule(raw, index);
}

export class Router {
  /** Frames each count rule matched, by name. */
  readonly counts = new Map<string, number>();

  constructor(readonly rules: readonly RouteRule[]) {}

  /** Decides the fate of a frame with these codes; `frames` is how many frames it stands for (a sample's fragments). */
  route(src: number, dst: number, typ: number, frames = 1): RouteDecision {
    let capture = false;
    const counted: string[] = [];
    for (const rule of this.rules) {
      const m = rule.match;
      if ((m.src !== undefined && m.src !== src) || (m.dst !== undefined && m.dst !== dst) || (m.typ !== undefined && m.typ !== typ)) continue;
      switch (rule.action) {
        case 'deliver':
          return { deliver: true, src, dst, capture, counted };
        case 'drop':
          return { deliver: false, src, dst, capture, counted };
        case 'set-dst':
          dst = rule.value!;
          break;
        case 'set-src':
          src = rule.value!;
          break;
        case 'count':
          counted.push(rule.name!);
          this.counts.set(rule.name!, (this.counts.get(rule.name!) ?? 0) + frames);
          break;
        case 'capture':
          capture = true;
          break;
      }
    }
    return { deliver: true, src, dst, capture, counted };
  }
}
