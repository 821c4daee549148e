/**
 * Two small chart kinds as standalone SVG text, enough for an experiment report: lines (with an
 * optional shaded band, e.g. mean ± std) and points with error bars. No plotting dependency: a
 * report must render in any browser or Markdown viewer and diff as text in git.
 */

/** One line of a line chart. `lower`/`upper`, when given, are drawn as a shaded band under the line. */
export interface LineSeries {
  readonly label: string;
  readonly x: readonly number[];
  readonly y: readonly number[];
  readonly lower?: readonly number[];
  readonly upper?: readonly number[];
  /** Index into PALETTE; series that belong together (train and eval of one rate) share one. Defaults to the series' position. */
  readonly colorIndex?: number;
  /** Draw the line dashed. Defaults to false. */
  readonly dashed?: boolean;
}

/** One point with a symmetric error bar (e.g. mean ± std over seeds). */
export interface ErrorBarPoint {
  readonly x: number;
  readonly y: number;
  /** Half-length of the bar; 0 or NaN draws no bar. */
  readonly error: number;
}

export interface ChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** Pixels. Defaults to 720. */
  readonly width?: number;
  /** Pixels. Defaults to 420. */
  readonly height?: number;
  /** Formats tick labels on the x axis. Defaults to `formatNumber`. */
  readonly xFormat?: (v: number) => string;
}

/** Colour-blind-safe palette (Okabe–Ito), cycled over series. */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'] as const;

const MARGIN = { left: 72, right: 160, top: 40, bottom: 56 } as const;

/** Escapes text for SVG/XML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** A short decimal for tick labels: up to 4 significant digits, no trailing zeros. */
export function formatNumber(v: number): string {
  if (v === 0) return '0';
  return Number(v.toPrecision(4)).toString();
}

/**
 * "Nice" tick positions covering [min, max]: steps of 1, 2 or 5 × 10^k, about `count` of them.
 * Degenerate ranges (min = max) are widened so an axis always has extent.
 */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude;
  const first = Math.floor(min / step) * step;
  const ticks: number[] = [];
  for (let v = first; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if ((ticks[ticks.length - 1] ?? min) < max) ticks.push(Number((first + ticks.length * step).toPrecision(12)));
  return ticks;
}

interface Frame {
  readonly width: number;
  readonly height: number;
  readonly sx: (v: number) => number;
  readonly sy: (v: number) => number;
  readonly parts: string[];
}

const fmt = (v: number): string => (Math.round(v * 100) / 100).toString();

function frame(options: ChartOptions, xs: readonly number[], ys: readonly number[]): Frame {
  const width = options.width ?? 720;
  const height = options.height ?? 420;
  const finite = (vs: readonly number[]): number[] => vs.filter((v) => Number.isFinite(v));
  const fx = finite(xs);
  const fy = finite(ys);
  const xTicks = niceTicks(Math.min(...fx), Math.max(...fx));
  const yTicks = niceTicks(Math.min(...fy), Math.max(...fy));
  // Pad the x domain so points and error bars at the first and last tick are not cut by the frame.
  const xPad = ((xTicks[xTicks.length - 1] ?? 1) - (xTicks[0] ?? 0)) * 0.04;
  const x0 = (xTicks[0] ?? 0) - xPad;
  const x1 = (xTicks[xTicks.length - 1] ?? 1) + xPad;
  const y0 = yTicks[0] ?? 0;
  const y1 = yTicks[yTicks.length - 1] ?? 1;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const sx = (v: number): number => MARGIN.left + ((v - x0) / (x1 - x0)) * plotW;
  const sy = (v: number): number => MARGIN.top + plotH - ((v - y0) / (y1 - y0)) * plotH;
  const xFormat = options.xFormat ?? formatNumber;
  const parts: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(options.title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(options.title)}</text>`,
  ];
  for (const v of yTicks) {
    const y = fmt(sy(v));
    parts.push(`<line x1="${MARGIN.left}" y1="${y}" x2="${MARGIN.left + plotW}" y2="${y}" stroke="#e0e0e0"/>`);
    parts.push(`<text x="${MARGIN.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${escapeXml(formatNumber(v))}</text>`);
  }
  for (const v of xTicks) {
    const x = fmt(sx(v));
    parts.push(`<line x1="${x}" y1="${MARGIN.top + plotH}" x2="${x}" y2="${MARGIN.top + plotH + 5}" stroke="#333333"/>`);
    parts.push(`<text x="${x}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${escapeXml(xFormat(v))}</text>`);
  }
  parts.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333333"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${height - 14}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`,
    `<text x="16" y="${MARGIN.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 16 ${MARGIN.top + plotH / 2})">${escapeXml(options.yLabel)}</text>`,
  );
  return { width, height, sx, sy, parts };
}

const DASH = ' stroke-dasharray="6 4"';

function legend(f: Frame, entries: readonly { label: string; colorIndex: number; dashed: boolean }[]): void {
  entries.forEach(({ label, colorIndex, dashed }, i) => {
    const y = MARGIN.top + 10 + i * 20;
    const x = f.width - MARGIN.right + 14;
    const color = PALETTE[colorIndex % PALETTE.length]!;
    f.parts.push(`<line x1="${x}" y1="${y}" x2="${x + 22}" y2="${y}" stroke="${color}" stroke-width="2.5"${dashed ? DASH : ''}/>`);
    f.parts.push(`<text x="${x + 28}" y="${y}" dominant-baseline="middle">${escapeXml(label)}</text>`);
  });
}

/** A line chart, one coloured line per series, with shaded bands where a series has lower/upper. */
export function lineChart(options: ChartOptions, series: readonly LineSeries[]): string {
  const xs = series.flatMap((s) => s.x);
  const ys = series.flatMap((s) => [...s.y, ...(s.lower ?? []), ...(s.upper ?? [])]);
  const f = frame(options, xs, ys);
  const colorOf = (s: LineSeries, i: number): number => s.colorIndex ?? i;
  series.forEach((s, i) => {
    const color = PALETTE[colorOf(s, i) % PALETTE.length]!;
    const idx = s.x.map((_, j) => j).filter((j) => Number.isFinite(s.x[j]!) && Number.isFinite(s.y[j]!));
    if (s.lower !== undefined && s.upper !== undefined) {
      const lower = s.lower;
      const upper = s.upper;
      const band = idx.filter((j) => Number.isFinite(lower[j]!) && Number.isFinite(upper[j]!));
      if (band.length > 1) {
        const top = band.map((j) => `${fmt(f.sx(s.x[j]!))},${fmt(f.sy(upper[j]!))}`);
        const bottom = band.reverse().map((j) => `${fmt(f.sx(s.x[j]!))},${fmt(f.sy(lower[j]!))}`);
        f.parts.push(`<polygon points="${[...top, ...bottom].join(' ')}" fill="${color}" fill-opacity="0.15" stroke="none"/>`);
      }
    }
    const points = idx.map((j) => `${fmt(f.sx(s.x[j]!))},${fmt(f.sy(s.y[j]!))}`);
    f.parts.push(`<polyline points="${points.join(' ')}" fill="none" stroke="${color}" stroke-width="2"${s.dashed === true ? DASH : ''}><title>${escapeXml(s.label)}</title></polyline>`);
  });
  legend(f, series.map((s, i) => ({ label: s.label, colorIndex: colorOf(s, i), dashed: s.dashed === true })));
  f.parts.push('</svg>', '');
  return f.parts.join('\n');
}

/** Points with vertical error bars, joined by a thin line in x order; each point's value is in a tooltip. */
export function errorBarChart(options: ChartOptions, label: string, points: readonly ErrorBarPoint[]): string {
  const bar = (p: ErrorBarPoint): number => (Number.isFinite(p.error) ? p.error : 0);
  const f = frame(
    options,
    points.map((p) => p.x),
    points.flatMap((p) => [p.y - bar(p), p.y + bar(p)]),
  );
  const color = PALETTE[0];
  const sorted = [...points].filter((p) => Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
  f.parts.push(`<polyline points="${sorted.map((p) => `${fmt(f.sx(p.x))},${fmt(f.sy(p.y))}`).join(' ')}" fill="none" stroke="${color}" stroke-opacity="0.5"/>`);
  for (const p of sorted) {
    const x = fmt(f.sx(p.x));
    if (bar(p) > 0) {
      const top = fmt(f.sy(p.y + bar(p)));
      const bottom = fmt(f.sy(p.y - bar(p)));
      f.parts.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${bottom}" stroke="${color}" stroke-width="1.5"/>`);
      for (const y of [top, bottom]) f.parts.push(`<line x1="${fmt(f.sx(p.x) - 6)}" y1="${y}" x2="${fmt(f.sx(p.x) + 6)}" y2="${y}" stroke="${color}" stroke-width="1.5"/>`);
    }
    const tip = `${formatNumber(p.x)}: ${p.y.toFixed(4)} ± ${bar(p).toFixed(4)}`;
    f.parts.push(`<circle cx="${x}" cy="${fmt(f.sy(p.y))}" r="4" fill="${color}"><title>${escapeXml(tip)}</title></circle>`);
  }
  legend(f, [{ label, colorIndex: 0, dashed: false }]);
  f.parts.push('</svg>', '');
  return f.parts.join('\n');
}
