/** The correctness checks of a soak, shared by `npm run bench:soak` and test/soak (never timings). */
import type { SoakResult } from './run-soak.js'
import type { SoakSummary } from './report.js'

export function soakVerdict(r: SoakResult, s: SoakSummary): { ok: boolean; problems: string[] } {
  const p: string[] = []
  if (s.wrongBytes > 0) p.push(`${s.wrongBytes} runs read wrong bytes`)
  if (s.corruptServed > 0) p.push(`the corrupted layer returned bytes ${s.corruptServed} times`)
  if (s.unexcused.length > 0) p.push(`${s.unexcused.length} failures outside long outages and stargzd restarts (${[...new Set(s.unexcused.map((u) => u.outcome))].join(', ')})`)
  if (s.cacheMaxBytes > s.cacheCapBytes) p.push(`cache reached ${s.cacheMaxBytes} bytes, cap ${s.cacheCapBytes}`)
  const L = r.leaks
  if (L.containers || L.tasks || L.activeSnapshots) p.push(`left behind: ${L.containers} containers, ${L.tasks} tasks, ${L.activeSnapshots} active snapshots`)
  if (L.extraFuseMounts || L.mountsAfterStop.length) p.push(`mounts: ${L.extraFuseMounts} extra FUSE mounts, ${L.mountsAfterStop.length} after stop`)
  if (L.tempFiles) p.push(`${L.tempFiles} temp files in the cache`)
  if (L.processes.length) p.push(`${L.processes.length} processes left`)
  if (!r.storeAgrees) p.push(`store: ${r.storeDetail}`)
  if (s.ok === 0) p.push('no run succeeded')
  p.push(...r.errors)
  return { ok: p.length === 0, problems: p }
}
