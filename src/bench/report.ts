/**
 * Results of `stargz bench`: medians per image × mode, the Markdown table, the JSON document and
 * the chart.
 */
import { renderStackedBarChart } from './chart.js'
import type { BenchDaemon, BenchMode, RunSample } from './measure.js'

export interface ImageInfo {
  name: string
  workload: string[]
  uncompressedBytes: number
  /** Compressed image size (layers + config + manifest) per form. */
  forms: Partial<Record<BenchMode, { manifest: string; compressedBytes: number; layers: number; prioritizedFiles?: number }>>
}

export interface CellResult {
  image: string
  mode: BenchMode
  /** Lazy modes: which snapshotter; absent for legacy (overlayfs). */
  daemon?: BenchDaemon
  samples: RunSample[]
  errors: string[]
  /** Medians of each phase and of the totals, over the successful samples. */
  median?: { pull: number; create: number; run: number; total: number; bytesFetched: number; stargzdFetchedBytes?: number; blobRequests?: number }
  /** Legacy's median total / this median total. */
  speedup?: number
  /** Ours and baseline: this median / the reference's median in the same run, per phase and total. */
  vsReference?: { pull: number; create: number; run: number; total: number }
}

export interface BenchResults {
  version: 1
  startedAt: string
  finishedAt: string
  host: { cpus: number; kernel: string; node: string; containerd: string }
  link: { rateMbit: number; rttMs: number }
  runs: number
  dropCaches: boolean
  backgroundFetch: boolean
  notes: string[]
  images: ImageInfo[]
  results: CellResult[]
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

/** Fill in medians and speed-ups. */
export function summarize(cells: CellResult[]): void {
  for (const c of cells) {
    if (c.samples.length === 0) { delete c.median; continue }
    const f = (k: 'pull' | 'create' | 'run' | 'total' | 'bytesFetched'): number => median(c.samples.map((s) => s[k]))
    const sf = c.samples.map((s) => s.stargzdFetchedBytes).filter((v): v is number => v !== undefined)
    const br = c.samples.map((s) => s.blobRequests).filter((v): v is number => v !== undefined)
    c.median = { pull: f('pull'), create: f('create'), run: f('run'), total: f('total'), bytesFetched: f('bytesFetched'), ...(sf.length > 0 ? { stargzdFetchedBytes: median(sf) } : {}), ...(br.length > 0 ? { blobRequests: median(br) } : {}) }
  }
  for (const c of cells) {
    const r = c.daemon === 'ours' || c.daemon === 'baseline' ? cells.find((x) => x.image === c.image && x.mode === c.mode && x.daemon === 'reference') : undefined
    if (r?.median && c.median && r.median.total > 0) {
      const q = (k: 'pull' | 'create' | 'run' | 'total'): number => (c.median as NonNullable<CellResult['median']>)[k] / (r.median as NonNullable<CellResult['median']>)[k]
      c.vsReference = { pull: q('pull'), create: q('create'), run: q('run'), total: q('total') }
    } else delete c.vsReference
  }
  for (const c of cells) {
    const legacy = cells.find((l) => l.image === c.image && l.mode === 'legacy')
    if (legacy?.median && c.median && c.median.total > 0) c.speedup = legacy.median.total / c.median.total
    else delete c.speedup
  }
}

const s2 = (v: number): string => v.toFixed(2)
const mb = (v: number): string => (v / 1e6 >= 100 ? (v / 1e6).toFixed(0) : (v / 1e6).toFixed(1))

export function markdownTable(r: BenchResults): string {
  const lines = [
    `### stargz bench: start-up (pull + create + run), ${r.link.rateMbit} Mbit/s, ${r.link.rttMs} ms RTT, median of ${r.runs} cold run${r.runs === 1 ? '' : 's'}`,
    '',
    '| image | mode | snapshotter | pull (s) | create (s) | run (s) | total (s) | MB fetched | blob req | ours/ref total (pull / create / run) | speed-up vs legacy |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const c of r.results) {
    const m = c.median
    const who = c.daemon === 'reference' ? 'reference' : c.daemon === 'ours' ? 'stargzd' : c.daemon === 'baseline' ? 'stargzd (baseline)' : 'overlayfs'
    if (!m) {
      lines.push(`| ${c.image} | ${c.mode} | ${who} | — | — | — | failed | — | — | — | — |`)
      continue
    }
    const failed = c.errors.length > 0 ? ` (${c.errors.length} failed)` : ''
    const v = c.vsReference
    const ratio = v ? `**${v.total.toFixed(2)}** (${v.pull.toFixed(2)} / ${v.create.toFixed(2)} / ${v.run.toFixed(2)})` : '—'
    lines.push(`| ${c.image} | ${c.mode} | ${who} | ${s2(m.pull)} | ${s2(m.create)} | ${s2(m.run)} | ${s2(m.total)}${failed} | ${mb(m.bytesFetched)} | ${m.blobRequests ?? '—'} | ${ratio} | ${c.mode === 'legacy' ? '1.0×' : c.speedup !== undefined ? `${c.speedup.toFixed(1)}×` : '—'} |`)
  }
  lines.push('', ...r.notes.map((n) => `- ${n}`))
  const sizes = r.images.map((i) => {
    const f = Object.entries(i.forms).map(([mode, v]) => `${mode} ${mb(v.compressedBytes)} MB${v.prioritizedFiles !== undefined ? ` (${v.prioritizedFiles} prioritized files)` : ''}`).join(', ')
    return `- ${i.name}: ${mb(i.uncompressedBytes)} MB uncompressed; compressed: ${f}; workload \`${i.workload.join(' ')}\``
  })
  lines.push('', 'Images:', ...sizes)
  const errs = r.results.flatMap((c) => c.errors.map((e) => `- ${c.image} / ${c.mode}: ${e.split('\n')[0]}`))
  if (errs.length > 0) lines.push('', 'Failures:', ...errs)
  return lines.join('\n') + '\n'
}

export function chartSvg(r: BenchResults): string {
  const images = [...new Set(r.results.map((c) => c.image))]
  return renderStackedBarChart({
    title: 'Start-up time: pull + create + run (to first output line)',
    subtitle: `${r.link.rateMbit} Mbit/s, ${r.link.rttMs} ms RTT emulated link; median of ${r.runs} cold run${r.runs === 1 ? '' : 's'} per bar; ${r.host.cpus} CPUs`,
    panels: images.map((image) => ({
      title: image,
      bars: r.results.filter((c) => c.image === image).map((c) => c.median
        ? {
            label: c.daemon === 'reference' ? `${c.mode} (ref)` : c.daemon === 'baseline' ? `${c.mode} (before)` : c.mode,
            segments: [{ label: 'pull', value: c.median.pull }, { label: 'create', value: c.median.create }, { label: 'run', value: c.median.run }],
            note: `(${mb(c.median.bytesFetched)} MB)`,
          }
        : { label: c.daemon === 'reference' ? `${c.mode} (ref)` : c.daemon === 'baseline' ? `${c.mode} (before)` : c.mode, segments: [], missing: 'failed' }),
    })),
  })
}
