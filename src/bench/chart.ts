/**
 * A HelloBench-style chart as a standalone SVG: one panel per image (each with its own time axis,
 * since a 1 MB and a 1.7 GB image differ by two orders of magnitude), one horizontal bar per mode,
 * stacked pull / create / run, with the total (and an optional note such as bytes fetched) at the
 * end of the bar. No dependencies; the output is plain SVG 1.1 that browsers and GitHub render.
 */

export interface ChartSegment {
  label: string
  value: number
}

export interface ChartBar {
  label: string
  segments: ChartSegment[]
  /** Text after the total, e.g. "6.0 MB". */
  note?: string
  /** Drawn hatched with this text instead of bars (e.g. a failed run). */
  missing?: string
}

export interface ChartPanel {
  title: string
  bars: ChartBar[]
}

export interface ChartOptions {
  title: string
  subtitle?: string
  panels: ChartPanel[]
  /** Unit of the values, for the axis; default "s". */
  unit?: string
  /** Colours per segment label; defaults for pull/create/run. */
  colors?: Record<string, string>
  width?: number
}

const DEFAULT_COLORS: Record<string, string> = { pull: '#4e79a7', create: '#f28e2b', run: '#59a14f' }
const FALLBACK = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948']

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;')
}

/** A "nice" axis maximum and step: 1, 2, 2.5 or 5 × 10^k, about 5 ticks. */
export function niceScale(max: number): { max: number; step: number } {
  if (!(max > 0) || !Number.isFinite(max)) return { max: 1, step: 0.2 }
  const rough = max / 5
  const pow = 10 ** Math.floor(Math.log10(rough))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= rough) ?? 10 * pow
  return { max: Math.ceil(max / step - 1e-9) * step, step }
}

function fmt(v: number): string {
  if (v === 0) return '0'
  if (Math.abs(v) >= 100) return v.toFixed(0)
  if (Math.abs(v) >= 10) return v.toFixed(1).replace(/\.0$/, '')
  return v.toFixed(2).replace(/0$/, '').replace(/\.0$/, '')
}

export function renderStackedBarChart(opts: ChartOptions): string {
  const unit = opts.unit ?? 's'
  const width = opts.width ?? 860
  const labelW = 130
  const rightW = 150
  const plotW = width - labelW - rightW - 20
  const barH = 22
  const gap = 8
  const panelHead = 26
  const axisH = 26
  const colors = { ...DEFAULT_COLORS, ...opts.colors }
  const segLabels: string[] = []
  for (const p of opts.panels) for (const b of p.bars) for (const s of b.segments) if (!segLabels.includes(s.label)) segLabels.push(s.label)
  const colorOf = (label: string): string => colors[label] ?? FALLBACK[segLabels.indexOf(label) % FALLBACK.length] ?? '#999'

  const out: string[] = []
  const headH = opts.subtitle ? 56 : 38
  let y = headH
  // Legend
  const legend: string[] = []
  let lx = labelW
  for (const l of segLabels) {
    legend.push(`<rect x="${lx}" y="${y}" width="12" height="12" fill="${colorOf(l)}"/>`,
      `<text x="${lx + 17}" y="${y + 10}" class="small">${escapeXml(l)}</text>`)
    lx += 30 + l.length * 7
  }
  y += 26

  for (const p of opts.panels) {
    const maxTotal = Math.max(0, ...p.bars.map((b) => b.segments.reduce((n, s) => n + Math.max(0, s.value), 0)))
    const scale = niceScale(maxTotal)
    const x = (v: number): number => labelW + (plotW * v) / scale.max
    out.push(`<text x="10" y="${y + 16}" class="panel">${escapeXml(p.title)}</text>`)
    y += panelHead
    const top = y
    const plotH = p.bars.length * (barH + gap)
    // grid + ticks
    for (let t = 0; t <= scale.max + 1e-9; t += scale.step) {
      const gx = x(t).toFixed(1)
      out.push(`<line x1="${gx}" y1="${top - 2}" x2="${gx}" y2="${top + plotH}" class="grid"/>`,
        `<text x="${gx}" y="${top + plotH + 14}" text-anchor="middle" class="small">${fmt(t)}</text>`)
    }
    out.push(`<text x="${labelW + plotW}" y="${top + plotH + 14}" dx="14" class="small">${escapeXml(unit)}</text>`)
    for (const [i, b] of p.bars.entries()) {
      const by = top + i * (barH + gap)
      out.push(`<text x="${labelW - 8}" y="${by + barH / 2 + 4}" text-anchor="end" class="label">${escapeXml(b.label)}</text>`)
      if (b.missing !== undefined) {
        out.push(`<rect x="${labelW}" y="${by}" width="${plotW / 3}" height="${barH}" fill="url(#hatch)" stroke="#999"/>`,
          `<text x="${labelW + plotW / 3 + 6}" y="${by + barH / 2 + 4}" class="small">${escapeXml(b.missing)}</text>`)
        continue
      }
      let acc = 0
      for (const s of b.segments) {
        const v = Math.max(0, s.value)
        const w = x(acc + v) - x(acc)
        out.push(`<rect x="${x(acc).toFixed(2)}" y="${by}" width="${Math.max(0, w).toFixed(2)}" height="${barH}" fill="${colorOf(s.label)}">` +
          `<title>${escapeXml(`${b.label} ${s.label}: ${fmt(v)} ${unit}`)}</title></rect>`)
        acc += v
      }
      out.push(`<text x="${(x(acc) + 6).toFixed(1)}" y="${by + barH / 2 + 4}" class="label">${escapeXml(`${fmt(acc)} ${unit}${b.note ? `  ${b.note}` : ''}`)}</text>`)
    }
    y = top + plotH + axisH
  }
  const height = y + 8
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    '<defs>',
    '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#bbb" stroke-width="2"/></pattern>',
    '<style>.title{font-size:17px;font-weight:bold}.sub{font-size:12px;fill:#555}.panel{font-size:14px;font-weight:bold}.label{font-size:12px}.small{font-size:11px;fill:#333}.grid{stroke:#e3e3e3;stroke-width:1}</style>',
    '</defs>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="24" class="title">${escapeXml(opts.title)}</text>`,
    ...(opts.subtitle ? [`<text x="10" y="44" class="sub">${escapeXml(opts.subtitle)}</text>`] : []),
    ...legend,
    ...out,
    '</svg>',
    '',
  ].join('\n')
}
