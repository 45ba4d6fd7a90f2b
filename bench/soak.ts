/**
 * Soak benchmark (issue #17): real containerd + runc + stargzd (with stargz-fused) + docker-registry
 * behind the fault proxy, containers from 4 images (python3 hashing its stdlib, a big-file sha256
 * reader, a find/stat walker, busybox) plus one image with a bit flipped in the registry's storage,
 * 8 at a time in a loop, while faults come on a schedule (harness/soak/faults.ts). Bounded:
 * --minutes (15).
 *
 *   npm run bench:soak [-- --minutes N] [--concurrency C] [--cache-mib M] [--no-kill-fused] [--no-fused] [--faults k1,k2,…] [--record]
 *
 * kill -9 of stargz-fused is on the schedule since fuseproto (#11) landed: the fd holder keeps the
 * mounts and a new stargz-fused re-serves them (needs native/build/fusefd.node, built by
 * scripts/build-native.sh; without it stargz-fused falls back to fuse-native and the mounts die).
 * --no-kill-fused takes it off; --no-fused runs stargzd alone (the old design).
 * Writes bench/results/soak-<date>T<hhmm>.{json,svg,md}; --record appends a dated section to RESULTS.md.
 * Exit status 1 if any correctness check failed (wrong bytes, failures outside outages and kill -9
 * windows, cache over its cap, leaks, store disagreement).
 */
import { parseArgs } from 'node:util'
import { appendFile, mkdir, writeFile } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runSoak } from '../harness/soak/run-soak.js'
import { markdownTable, summarize, timelineSvg } from '../harness/soak/report.js'
import { soakVerdict } from '../harness/soak/verdict.js'
import { ALL_IMAGES } from '../harness/soak/workloads.js'
import { DEFAULT_ORDER, type FaultKind } from '../harness/soak/faults.js'

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '15' },
    concurrency: { type: 'string', default: '8' },
    'cache-mib': { type: 'string', default: '24' },
    'no-kill-fused': { type: 'boolean', default: false },
    'no-fused': { type: 'boolean', default: false },
    faults: { type: 'string' },
    record: { type: 'boolean', default: false },
  },
})

const here = fileURLToPath(new URL('.', import.meta.url))
const load0 = loadavg()[0] ?? 0
const result = await runSoak({
  minutes: Number(args.minutes),
  concurrency: Number(args.concurrency),
  images: ALL_IMAGES,
  cacheCapMiB: Number(args['cache-mib']),
  cacheFsMiB: Number(args['cache-mib']) * 3,
  slotMs: 40_000,
  outageMs: 30_000,
  readDeadlineSec: 10,
  fused: !args['no-fused'],
  faults: args.faults ? (args.faults.split(',') as FaultKind[]) : args['no-kill-fused'] ? DEFAULT_ORDER.filter((k) => k !== 'kill9-fused') : DEFAULT_ORDER,
  log: (l) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}] ${l}`),
})
const s = summarize(result)
const verdict = soakVerdict(result, s)
// The bench also judges the memory trend (the test does not: it is a figure over time). ~0 is
// taken as under 2 MiB/min after warm-up, 30 MiB over 15 minutes, in the longest-lived process.
// Runs under 10 minutes are mostly warm-up (the 256 MiB memory tier filling): no trend judged.
for (const [who, slope] of [['stargzd', s.rssSlopeMiBPerMin], ['stargz-fused', s.fusedRssSlopeMiBPerMin]] as const) {
  if (Number(args.minutes) >= 10 && slope !== undefined && slope > 2) { verdict.ok = false; verdict.problems.push(`${who} RSS grows ${slope.toFixed(1)} MiB/min`) }
}
// Date and time: several runs a day must not overwrite each other's files.
const stamp = `${result.startedAt.slice(0, 10)}T${result.startedAt.slice(11, 16).replace(':', '')}`
const dir = join(here, 'results')
await mkdir(dir, { recursive: true })
await writeFile(join(dir, `soak-${stamp}.json`), JSON.stringify({ ...result, summary: s }, null, 1))
await writeFile(join(dir, `soak-${stamp}.svg`), timelineSvg(result))
const table = markdownTable(result, s)
const section = [
  `## Soak (issue #17) — ${result.startedAt.slice(0, 16)}Z, load average ${load0.toFixed(1)} at start`,
  '',
  `\`npm run bench:soak -- --minutes ${args.minutes} --concurrency ${args.concurrency}${args['no-kill-fused'] ? ' --no-kill-fused' : ''}${args['no-fused'] ? ' --no-fused' : ''}${args.faults ? ` --faults ${args.faults}` : ''}\` on the shared 2-core machine. ` +
  `Cache cap ${result.options.cacheCapMiB} MiB on a ${result.options.cacheFsMiB} MiB tmpfs, background fetch on, ` +
  `[blob] fetching_timeout_sec = ${result.options.readDeadlineSec}. Verdict: **${verdict.ok ? 'pass' : 'FAIL'}**${verdict.problems.length ? ' — ' + verdict.problems.join('; ') : ''}.`,
  '',
  table,
  '',
  `Daemon warn/error log lines by message: ${Object.entries(result.daemonWarnings).map(([k, v]) => `${k} ×${v}`).join(', ') || 'none'}.`,
  '',
  `![soak timeline](results/soak-${stamp}.svg)`,
  '',
].join('\n')
await writeFile(join(dir, `soak-${stamp}.md`), section)
if (args.record) await appendFile(join(here, 'RESULTS.md'), '\n' + section)
console.log(table)
for (const r of s.unexcused.slice(0, 20)) console.log(`unexcused: ${r.image} at ${(r.startMs / 1000).toFixed(0)} s: ${r.outcome} ${r.detail ?? ''}`)
console.log(verdict.ok ? 'soak: pass' : `soak: FAIL: ${verdict.problems.join('; ')}`)
process.exitCode = verdict.ok ? 0 : 1
