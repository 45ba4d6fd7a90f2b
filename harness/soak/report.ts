/**
 * Figures from a SoakResult: a summary (what the test asserts and RESULTS.md reports), a markdown
 * table, and a timeline SVG (one panel per series over the same time axis, fault markers shaded).
 */
import { escapeXml, niceScale } from '../../src/bench/chart.js'
import type { RunRecord, SoakResult } from './run-soak.js'

export interface SoakSummary {
  runs: number
  ok: number
  wrongBytes: number
  corruptServed: number
  /** Failures not explained by an outage (EIO) or a kill -9 window. */
  unexcused: RunRecord[]
  excused: Record<string, number>
  failuresByKind: Record<string, number>
  bytesVerified: number
  filesVerified: number
  corruptEio: number
  cacheMaxBytes: number
  cacheCapBytes: number
  rssSlopeMiBPerMin: number | undefined
  rssMaxMiB: number | undefined
  /** stargz-fused (the process that reads, caches and serves FUSE when it runs). */
  fusedRssSlopeMiBPerMin: number | undefined
  fusedRssMaxMiB: number | undefined
  stdioLost: number
  loopP99MaxMs: number | undefined
  loopP99MedianMs: number | undefined
  /** Longest time from a kill -9 until a new container ran again. */
  killRecoveryMaxSec: number | undefined
}

/** Least-squares slope of RSS over time in the longest stretch one process ran, after a minute's warm-up. */
function rssSlope(r: SoakResult, which: 'daemon' | 'fused' = 'daemon'): number | undefined {
  const byPid = new Map<number, { t: number; v: number }[]>()
  for (const s of r.samples) {
    const pid = which === 'daemon' ? s.daemonPid : s.fusedPid
    const rss = which === 'daemon' ? s.rssBytes : s.fusedRssBytes
    if (pid === undefined || rss === undefined) continue
    const list = byPid.get(pid) ?? []
    list.push({ t: s.tMs / 60_000, v: rss / (1 << 20) })
    byPid.set(pid, list)
  }
  const longest = [...byPid.values()].map((l) => l.filter((p) => p.t - (l[0]?.t ?? 0) >= 1)).sort((a, b) => b.length - a.length)[0]
  if (!longest || longest.length < 4) return undefined
  const n = longest.length
  const mt = longest.reduce((a, p) => a + p.t, 0) / n
  const mv = longest.reduce((a, p) => a + p.v, 0) / n
  const num = longest.reduce((a, p) => a + (p.t - mt) * (p.v - mv), 0)
  const den = longest.reduce((a, p) => a + (p.t - mt) ** 2, 0)
  return den === 0 ? 0 : num / den
}

export function summarize(r: SoakResult): SoakSummary {
  const failuresByKind: Record<string, number> = {}
  const excused: Record<string, number> = {}
  for (const x of r.runs) {
    if (x.outcome === 'ok') continue
    failuresByKind[x.outcome] = (failuresByKind[x.outcome] ?? 0) + 1
    if (x.excusedBy) excused[x.excusedBy] = (excused[x.excusedBy] ?? 0) + 1
  }
  const p99s = r.samples.map((s) => s.loopP99Ms).filter((v): v is number => v !== undefined && Number.isFinite(v)).sort((a, b) => a - b)
  const rss = r.samples.map((s) => s.rssBytes).filter((v): v is number => v !== undefined)
  const frss = r.samples.map((s) => s.fusedRssBytes).filter((v): v is number => v !== undefined)
  return {
    runs: r.runs.length,
    ok: r.runs.filter((x) => x.outcome === 'ok').length,
    wrongBytes: r.runs.filter((x) => x.outcome === 'wrong-bytes').length,
    corruptServed: r.runs.filter((x) => x.outcome === 'corrupt-served').length,
    unexcused: r.runs.filter((x) => x.outcome !== 'ok' && !x.excusedBy),
    excused, failuresByKind,
    bytesVerified: r.runs.reduce((n, x) => n + x.bytes, 0),
    filesVerified: r.runs.reduce((n, x) => n + x.files, 0),
    corruptEio: r.runs.filter((x) => x.image === 'corrupt' && x.outcome === 'ok').length,
    cacheMaxBytes: r.cacheMaxBytes,
    cacheCapBytes: r.options.cacheCapMiB * (1 << 20),
    rssSlopeMiBPerMin: rssSlope(r),
    rssMaxMiB: rss.length ? Math.max(...rss) / (1 << 20) : undefined,
    fusedRssSlopeMiBPerMin: rssSlope(r, 'fused'),
    fusedRssMaxMiB: frss.length ? Math.max(...frss) / (1 << 20) : undefined,
    stdioLost: r.stdioLost ?? 0,
    killRecoveryMaxSec: (() => {
      const k = r.markers.filter((m) => (m.kind === 'kill9' || m.kind === 'kill9-fused') && m.recoveredMs !== undefined).map((m) => ((m.recoveredMs as number) - m.startMs) / 1000)
      return k.length ? Math.max(...k) : undefined
    })(),
    loopP99MaxMs: p99s.length ? p99s[p99s.length - 1] : undefined,
    loopP99MedianMs: p99s.length ? p99s[Math.floor(p99s.length / 2)] : undefined,
  }
}

const f1 = (v: number | undefined, unit = ''): string => (v === undefined ? 'n/a' : `${v.toFixed(1)}${unit}`)

export function markdownTable(r: SoakResult, s: SoakSummary): string {
  const faults = new Map<string, number>()
  for (const m of r.markers) faults.set(m.kind, (faults.get(m.kind) ?? 0) + 1)
  const L = r.leaks
  const rows: [string, string][] = [
    ['duration', `${(r.durationMs / 60_000).toFixed(1)} min, ${r.options.concurrency} containers at a time, images: ${r.images.map((i) => i.name).join(', ')}; ${r.options.fused ?? true ? 'stargzd + stargz-fused' : 'stargzd alone'}`],
    ['container runs', `${s.runs} (${s.ok} ok)`],
    ['bytes verified against the source sha256', `${(s.bytesVerified / (1 << 20)).toFixed(1)} MiB in ${s.filesVerified} file reads`],
    ['wrong bytes', `${s.wrongBytes}`],
    ['corrupted layer: reads that got EIO / that got bytes', `${s.corruptEio} / ${s.corruptServed}`],
    ['failures by kind', Object.entries(s.failuresByKind).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'],
    [`  allowed: in a ${r.options.outageMs / 1000} s outage (> ${r.options.readDeadlineSec} s read deadline) EIO / clear create error; create refused while stargzd restarts${r.options.fused ?? true ? '' : ' (any, no stargz-fused)'}; in a stargz-fused kill -9 window`, `${s.excused.outage ?? 0} / ${s.excused['outage-create'] ?? 0}; ${s.excused.kill9 ?? 0}; ${s.excused['kill9-fused'] ?? 0}`],
    ['failures outside those windows', `${s.unexcused.length}`],
    ['kill -9: stargzd / stargz-fused restarts; longest until a new container ran again', `${r.kills} / ${r.fusedKills ?? 0}; ${f1(s.killRecoveryMaxSec, ' s')}`],
    ['runs whose ctr stdout lost what the workload wrote (verified from its output file)', `${s.stdioLost}`],
    ['faults injected', [...faults].map(([k, v]) => `${k} ×${v}`).join(', ') + `; resets mid-body ${r.resetsInjected} of ${r.blobGets} blob GETs`],
    ['cache on disk, max / cap', `${(s.cacheMaxBytes / (1 << 20)).toFixed(1)} / ${(s.cacheCapBytes / (1 << 20)).toFixed(0)} MiB`],
    ['stargzd RSS max, slope after warm-up', `${f1(s.rssMaxMiB, ' MiB')}, ${f1(s.rssSlopeMiBPerMin, ' MiB/min')}`],
    ...(s.fusedRssMaxMiB !== undefined ? [['stargz-fused RSS max, slope after warm-up', `${f1(s.fusedRssMaxMiB, ' MiB')}, ${f1(s.fusedRssSlopeMiBPerMin, ' MiB/min')}`] as [string, string]] : []),
    ['event-loop delay p99 (median / max of 5 s samples)', `${f1(s.loopP99MedianMs, ' ms')} / ${f1(s.loopP99MaxMs, ' ms')}`],
    ['leaks at the end', `containers ${L.containers}, tasks ${L.tasks}, active snapshots ${L.activeSnapshots}, extra FUSE mounts ${L.extraFuseMounts}, mounts after stop ${L.mountsAfterStop.length}, temp files ${L.tempFiles}, processes ${L.processes.length}`],
    ['store: containerd vs daemon', `${r.storeAgrees ? 'agree' : 'DISAGREE'} (${r.storeDetail}; ${L.snapshotDirsVsStore})`],
  ]
  return ['| | |', '|---|---|', ...rows.map(([a, b]) => `| ${a} | ${b} |`)].join('\n')
}

const MARK_COLORS: Record<string, string> = {
  'burst-503': '#f28e2b', 'burst-429': '#f28e2b', stall: '#b07aa1', hostile: '#9c755f', 'redirect-expiry': '#76b7b2',
  outage: '#e15759', 'disk-full': '#edc948', kill9: '#000000', 'kill9-fused': '#555555',
}

/** Panels: runs/s, failures by kind, RSS, cache bytes; fault markers shaded across all of them. */
export function timelineSvg(r: SoakResult): string {
  const W = 900
  const panelH = 120
  const left = 70
  const right = 20
  const top = 40
  const gap = 30
  const tMax = Math.max(1, r.durationMs) / 1000
  const x = (sec: number): number => left + (sec / tMax) * (W - left - right)
  const dt = 5
  const series: { title: string; unit: string; lines: { label: string; color: string; pts: [number, number][] }[] }[] = [
    { title: 'container runs completed per s (ok)', unit: '/s', lines: [{ label: 'ok runs/s', color: '#59a14f', pts: r.samples.map((s) => [s.tMs / 1000, s.runsOk / dt]) }] },
    { title: 'failures per 5 s, by kind', unit: '', lines: ['eio', 'enotconn', 'snapshotter-unavailable', 'timeout', 'other', 'wrong-bytes', 'missing-output'].map((k, i) => ({ label: k, color: ['#e15759', '#4e79a7', '#b07aa1', '#f28e2b', '#9c755f', '#000000', '#76b7b2'][i] as string, pts: r.samples.map((s) => [s.tMs / 1000, s.failures[k as keyof typeof s.failures] ?? 0] as [number, number]) })).filter((l) => l.pts.some((p) => p[1] > 0)) },
    { title: 'RSS', unit: ' MiB', lines: [
      { label: 'stargzd MiB', color: '#4e79a7', pts: r.samples.filter((s) => s.rssBytes !== undefined).map((s) => [s.tMs / 1000, (s.rssBytes as number) / (1 << 20)] as [number, number]) },
      { label: 'stargz-fused MiB', color: '#59a14f', pts: r.samples.filter((s) => s.fusedRssBytes !== undefined).map((s) => [s.tMs / 1000, (s.fusedRssBytes as number) / (1 << 20)] as [number, number]) },
    ].filter((l) => l.pts.length > 0) },
    { title: `chunk cache on disk (cap ${r.options.cacheCapMiB} MiB)`, unit: ' MiB', lines: [{ label: 'cache MiB', color: '#f28e2b', pts: r.samples.map((s) => [s.tMs / 1000, s.cacheBytes / (1 << 20)]) }, { label: 'cap', color: '#e15759', pts: [[0, r.options.cacheCapMiB], [tMax, r.options.cacheCapMiB]] }] },
  ]
  const H = top + series.length * (panelH + gap) + 40
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">${escapeXml(`stargzd soak, ${r.startedAt.slice(0, 16)}Z, ${(r.durationMs / 60_000).toFixed(1)} min`)}</text>`]
  series.forEach((p, i) => {
    const y0 = top + i * (panelH + gap)
    const vmax = Math.max(1e-9, ...p.lines.flatMap((l) => l.pts.map((q) => q[1])))
    const { max } = niceScale(vmax)
    const y = (v: number): number => y0 + panelH - (v / max) * panelH
    for (const m of r.markers) {
      const w = Math.max(2, x(m.endMs / 1000) - x(m.startMs / 1000))
      out.push(`<rect x="${x(m.startMs / 1000).toFixed(1)}" y="${y0}" width="${w.toFixed(1)}" height="${panelH}" fill="${MARK_COLORS[m.kind] ?? '#ccc'}" opacity="0.18"><title>${m.kind}</title></rect>`)
    }
    out.push(`<rect x="${left}" y="${y0}" width="${W - left - right}" height="${panelH}" fill="none" stroke="#999"/>`,
      `<text x="${left}" y="${y0 - 6}" font-weight="bold">${escapeXml(p.title)}</text>`,
      `<text x="${left - 6}" y="${y0 + 10}" text-anchor="end">${escapeXml(`${+max.toFixed(2)}${p.unit}`)}</text>`,
      `<text x="${left - 6}" y="${y0 + panelH}" text-anchor="end">0</text>`)
    p.lines.forEach((l, j) => {
      if (l.pts.length === 0) return
      out.push(`<polyline fill="none" stroke="${l.color}" stroke-width="1.5" points="${l.pts.map((q) => `${x(q[0]).toFixed(1)},${y(q[1]).toFixed(1)}`).join(' ')}"/>`,
        `<text x="${W - right - 4}" y="${y0 + 12 + j * 12}" text-anchor="end" fill="${l.color}">${escapeXml(l.label)}</text>`)
    })
  })
  const yAxis = top + series.length * (panelH + gap) - gap + 14
  for (let s = 0; s <= tMax; s += 60) out.push(`<text x="${x(s).toFixed(1)}" y="${yAxis}" text-anchor="middle">${s / 60} min</text>`)
  let lx = left
  for (const [k, c] of Object.entries(MARK_COLORS).filter(([k]) => k !== 'burst-429')) {
    out.push(`<rect x="${lx}" y="${yAxis + 10}" width="10" height="10" fill="${c}" opacity="0.5"/><text x="${lx + 14}" y="${yAxis + 19}">${escapeXml(k === 'burst-503' ? '5xx/429 burst' : k)}</text>`)
    lx += 110
  }
  out.push('</svg>')
  return out.join('\n') + '\n'
}
