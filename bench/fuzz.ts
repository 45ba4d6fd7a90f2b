/**
 * Fuzz benchmark for the parsers that read what strangers wrote (issue #10):
 *   footer + TOC + chunk reading, the tar reader, multipart/byteranges, hosts.toml, filters and
 *   labels. Each target mutates valid seeds; every case runs in a worker thread watched by this
 *   thread, so a true infinite loop (or a promise that never settles) is caught: a case that holds
 *   the worker for more than --hang-ms (1 s) is re-run alone in a fresh worker, and counted as a
 *   hang if it is slow again (a busy shared machine can stall one case once).
 *
 *   npm run bench:fuzz [-- --cases N] [--targets estargz,tar,...] [--seed S] [--jobs J] [--record]
 *   npm run bench:fuzz -- --target tar --case 1234 [--seed S]     replay one case, in this thread
 *
 * A crash is any exception that is not the module's documented error (a StargzError subclass;
 * MultipartError for multipart), or a violated invariant. Exit status 1 when any crash or hang.
 */
import { Worker } from 'node:worker_threads'
import { parseArgs } from 'node:util'
import { appendFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { caseRng } from './fuzz/mutate.js'
import { ALL_TARGETS, TARGETS } from './fuzz/targets.js'
import type { WorkerInput, WorkerMessage } from './fuzz/worker.js'

const { values: args } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    targets: { type: 'string' },
    target: { type: 'string' },
    case: { type: 'string' },
    seed: { type: 'string', default: '1' },
    jobs: { type: 'string', default: '2' },
    'hang-ms': { type: 'string', default: '1000' },
    record: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (args.help) {
  console.log('usage: npm run bench:fuzz -- [--cases N] [--targets a,b] [--seed S] [--jobs J] [--hang-ms MS] [--record] | --target T --case I')
  process.exit(0)
}
const seed = Number(args.seed)
const hangMs = Number(args['hang-ms'])

if (args.case !== undefined) {
  const t = ALL_TARGETS.find((x) => x.name === args.target)
  if (!t) throw new Error(`--case needs --target, one of ${TARGETS.map((x) => x.name).join(', ')}`)
  await t.setup()
  const started = Date.now()
  try { await t.run(caseRng(seed, t.name, Number(args.case))); console.log('ok') } catch (e) {
    console.log(t.expected(e) ? 'documented error:' : 'CRASH:', e)
  }
  console.log(`${Date.now() - started} ms`)
  process.exit(0)
}

interface Finding { index: number; what: string }
interface Result { name: string; covers: string; cases: number; ok: number; typedErrors: number; crashes: Finding[]; hangs: Finding[]; slowRetried: number; peakRss: number; seconds: number }

const running = new Set<Result>()
let peakAll = 0
const sampler = setInterval(() => {
  const rss = process.memoryUsage.rss()
  peakAll = Math.max(peakAll, rss)
  for (const r of running) r.peakRss = Math.max(r.peakRss, rss)
}, 100)

const workerUrl = new URL('./fuzz/worker-boot.mjs', import.meta.url)

/** Run [start, end) of a target, restarting the worker after a hang or a worker death. */
async function runRange(r: Result, start: number, end: number, confirming = false): Promise<'ok' | 'slow'> {
  let next = start
  while (next < end) {
    const progress = new SharedArrayBuffer(16)
    const cells = new Int32Array(progress)
    cells[0] = next
    const data: WorkerInput = { target: r.name, start: next, end, seed, progress }
    const w = new Worker(workerUrl, { workerData: data })
    const outcome = await new Promise<{ kind: 'done' } | { kind: 'slow'; index: number } | { kind: 'died'; index: number; why: string }>((resolve) => {
      let watch: NodeJS.Timeout | undefined
      let last = -1
      let since = Date.now()
      const finish = (o: Parameters<typeof resolve>[0]): void => { if (watch) clearInterval(watch); watch = undefined; resolve(o) }
      w.on('message', (m: WorkerMessage) => {
        if (m.kind === 'ready') {
          since = Date.now()
          watch = setInterval(() => {
            const cur = Atomics.load(cells, 0) * 1e9 + Atomics.load(cells, 1)
            if (cur !== last) { last = cur; since = Date.now(); return }
            if (Date.now() - since > hangMs) finish({ kind: 'slow', index: Atomics.load(cells, 0) })
          }, 50)
        } else if (m.kind === 'crash') {
          if (!confirming) r.crashes.push({ index: m.index, what: `${m.message}\n${m.stack}` })
        } else finish({ kind: 'done' })
      })
      w.on('error', (e) => finish({ kind: 'died', index: Atomics.load(cells, 0), why: `${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(0, 6).join('\n')}` }))
      w.on('exit', (code) => finish({ kind: 'died', index: Atomics.load(cells, 0), why: `worker exited with ${code}` }))
    })
    await w.terminate()
    if (!confirming) { r.ok += Atomics.load(cells, 2); r.typedErrors += Atomics.load(cells, 3) }
    if (outcome.kind === 'done') return 'ok'
    if (outcome.kind === 'died' && outcome.why === 'worker exited with 13') {
      // Node's "unsettled top-level await": the event loop ran dry with a case still pending.
      if (!confirming) r.hangs.push({ index: outcome.index, what: 'a promise that never settles (the event loop ran dry mid-case)' })
      if (confirming) return 'slow'
      next = outcome.index + 1
      continue
    }
    if (outcome.kind === 'died') {
      r.crashes.push({ index: outcome.index, what: `uncaught in worker: ${outcome.why}` })
      next = outcome.index + 1
      continue
    }
    if (confirming) return 'slow'
    // Slow once: run it alone in a fresh worker; slow again is a hang.
    if ((await runRange(r, outcome.index, outcome.index + 1, true)) === 'slow') r.hangs.push({ index: outcome.index, what: `case ran for more than ${hangMs} ms twice` })
    else r.slowRetried++
    next = outcome.index + 1
  }
  return 'ok'
}

const cases = Number(args.cases)
const chosen = args.targets ? args.targets.split(',').map((n) => {
  const t = ALL_TARGETS.find((x) => x.name === n.trim())
  if (!t) throw new Error(`unknown target ${n}; targets: ${ALL_TARGETS.map((x) => x.name).join(', ')}`)
  return t
}) : [...TARGETS]
const results: Result[] = chosen.map((t) => ({ name: t.name, covers: t.covers, cases, ok: 0, typedErrors: 0, crashes: [], hangs: [], slowRetried: 0, peakRss: 0, seconds: 0 }))
const queue = [...results]
const started = Date.now()
await Promise.all(Array.from({ length: Math.max(1, Number(args.jobs)) }, async () => {
  for (let r = queue.shift(); r; r = queue.shift()) {
    const t0 = Date.now()
    running.add(r)
    await runRange(r, 0, cases)
    running.delete(r)
    r.seconds = (Date.now() - t0) / 1000
    console.error(`${r.name}: ${r.cases} cases, ${r.crashes.length} crashes, ${r.hangs.length} hangs, ${r.seconds.toFixed(0)} s`)
  }
}))
clearInterval(sampler)
const total = (Date.now() - started) / 1000

const mib = (b: number): string => (b / 2 ** 20).toFixed(0)
const lines = [
  '| target | covers | cases | ok | documented errors | crashes | hangs (> ' + hangMs + ' ms) | slow once, fine alone | peak RSS (MiB) | time (s) |',
  '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...results.map((r) => `| ${r.name} | ${r.covers} | ${r.cases} | ${r.ok} | ${r.typedErrors} | ${r.crashes.length} | ${r.hangs.length} | ${r.slowRetried} | ${mib(r.peakRss)} | ${r.seconds.toFixed(0)} |`),
]
const table = lines.join('\n')
console.log(table)
console.log(`\nwall ${total.toFixed(0)} s, seed ${seed}, jobs ${args.jobs}; peak RSS of the process ${mib(peakAll)} MiB (maxRSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB)`)
for (const r of results) {
  for (const f of [...r.crashes.slice(0, 5).map((c) => ['crash', c] as const), ...r.hangs.slice(0, 5).map((h) => ['hang', h] as const)]) {
    console.log(`\n${f[0]} in ${r.name}, case ${f[1].index} (replay: npm run bench:fuzz -- --target ${r.name} --case ${f[1].index} --seed ${seed}):\n${f[1].what}`)
  }
}
if (args.record) {
  const cpu = cpus()
  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  const section = [
    '', `## Fuzz bench (registry workstream, issue #10) — ${when}`, '',
    `Machine: ${cpu[0]?.model ?? 'unknown CPU'} × ${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, shared with other jobs; Node ${process.version}.`,
    `Command: \`npm run bench:fuzz -- --cases ${cases}${args.targets ? ` --targets ${args.targets}` : ''} --seed ${seed} --jobs ${args.jobs} --record\`; wall ${total.toFixed(0)} s.`,
    'Peak RSS is of the whole bench process (workers are threads), sampled every 100 ms while the target ran; with two jobs, two targets share it.', '',
    table, '',
  ].join('\n')
  await appendFile(new URL('./RESULTS.md', import.meta.url), section)
}
process.exit(results.some((r) => r.crashes.length > 0 || r.hangs.length > 0) ? 1 : 0)
