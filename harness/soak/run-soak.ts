/**
 * The soak: real docker-registry behind the fault proxy, stargzd (real FUSE, background fetch on,
 * a small chunk cache on its own tmpfs) and real containerd + runc running containers from the
 * soak images in a loop, N at a time, while FaultSchedule injects faults. Every 5 s a sample of
 * the daemon (RSS, event-loop delay p99 from its metrics, cache bytes on disk) and the workloads
 * (runs, bytes verified, failures by kind). At the end: leaks (containers, tasks, snapshots,
 * mounts, temp files, processes) and whether containerd's snapshots and the daemon's agree.
 *
 * Everything started here is stopped and unmounted in reverse order, also when a step throws.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { startContainerd, mountsUnder, type Containerd } from '../containerd.js'
import { startRegistry } from '../registry.js'
import { startFaultProxy } from '../fault-proxy.js'
import { daemonScratch, type StargzdProcess } from '../stargzd.js'
import { metricsAddress } from '../ports.js'
import { pidsMentioning } from '../../src/bench/proc.js'
import { snapshotsClientConstructor } from '../../src/grpc/proto.js'
import { buildSoakImages, type ImageName, type SoakImage } from './images.js'
import { verify, workloadCommand, type Outcome } from './workloads.js'
import { FaultSchedule, type FaultKind, type FaultMarker } from './faults.js'

export interface SoakOptions {
  minutes: number
  concurrency: number
  images: ImageName[]
  /** Scale of the generated image content. */
  scale?: number
  cacheCapMiB: number
  /** The tmpfs under the cache; larger than the cap so "full" is a fault we inject, not the cap. */
  cacheFsMiB: number
  slotMs: number
  outageMs: number
  faults?: FaultKind[]
  /** Responses in one 5xx/429 burst (default 20). At most [blob] max_retries (5) is never visible. */
  burstCount?: number
  /** [blob] fetching_timeout_sec: also how long a stalled body holds a read. */
  readDeadlineSec: number
  log?: (line: string) => void
}

export interface RunRecord { image: ImageName; startMs: number; endMs: number; outcome: Outcome; excusedBy?: string; bytes: number; files: number; detail?: string }

export interface Sample { tMs: number; runsOk: number; failures: Partial<Record<Outcome, number>>; bytesVerified: number; rssBytes: number | undefined; loopP99Ms: number | undefined; cacheBytes: number; daemonPid: number | undefined }

export interface SoakResult {
  options: SoakOptions
  startedAt: string
  durationMs: number
  images: { name: ImageName; layerBytes: number; files: number }[]
  runs: RunRecord[]
  samples: Sample[]
  markers: FaultMarker[]
  blobGets: number
  resetsInjected: number
  kills: number
  /** Findings at the end. */
  leaks: { containers: number; tasks: number; activeSnapshots: number; extraFuseMounts: number; mountsAfterStop: string[]; tempFiles: number; processes: number[]; snapshotDirsVsStore: string }
  storeAgrees: boolean
  storeDetail: string
  cacheMaxBytes: number
  /** The daemons' warn/error log lines, counted by message (and the first few kept whole). */
  daemonWarnings: Record<string, number>
  daemonWarningSamples: unknown[]
  errors: string[]
}

interface Teardowns { teardown(fn: () => unknown): void; run(): Promise<void> }
function teardowns(): Teardowns {
  const fns: (() => unknown)[] = []
  return {
    teardown: (fn) => { fns.push(fn) },
    run: async () => { for (const fn of fns.reverse()) await Promise.resolve().then(fn).catch(() => undefined) },
  }
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0
  let names: string[]
  try { names = await readdir(dir) } catch { return 0 }
  for (const name of names) {
    const p = join(dir, name)
    try {
      const s = await stat(p)
      n += s.isDirectory() ? await dirBytes(p) : s.size
    } catch { /* evicted while we looked */ }
  }
  return n
}

async function rssOf(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : undefined
  } catch { return undefined }
}

async function loopP99(sgd: StargzdProcess): Promise<number | undefined> {
  const addr = metricsAddress(sgd.logs)
  if (!addr) return undefined
  try {
    const text = await (await fetch(`http://${addr}/metrics`, { signal: AbortSignal.timeout(3000) })).text()
    const line = text.split('\n').find((l) => l.startsWith('stargzd_nodejs_eventloop_lag_p99_seconds'))
    return line ? Number(line.split(' ').pop()) * 1000 : undefined
  } catch { return undefined }
}

interface InfoMsg { name: string; parent: string; kind: string }

/** The daemon's own view: List straight on its socket, no containerd in between. */
async function listStore(sock: string): Promise<InfoMsg[]> {
  const Ctor = snapshotsClientConstructor()
  const client = new Ctor(`unix:${sock}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { List(req: unknown): grpc.ClientReadableStream<{ info: InfoMsg[] }> }
  try {
    return await new Promise((resolve, reject) => {
      const out: InfoMsg[] = []
      const s = client.List({ snapshotter: 'stargz' })
      s.on('data', (m: { info: InfoMsg[] }) => out.push(...m.info))
      s.on('end', () => resolve(out))
      s.on('error', reject)
    })
  } finally {
    client.close()
  }
}

/**
 * Which failures the soak allows. Never wrong bytes. EIO from a run that overlapped an outage.
 * Anything from a run that overlapped a kill -9 window, which lasts from the kill until the first
 * container started after the restart succeeds: the FUSE mounts die with the daemon (nothing on
 * main serves them from another process yet), and containerd's gRPC client keeps backing off its
 * reconnect for a while after the new daemon listens. The window is reported (recoveredMs).
 */
function excuse(runs: RunRecord[], markers: FaultMarker[]): void {
  for (const m of markers) {
    if (m.kind !== 'kill9') continue
    const first = runs.filter((r) => r.outcome === 'ok' && r.startMs >= m.endMs).sort((a, b) => a.endMs - b.endMs)[0]
    m.recoveredMs = first?.endMs ?? Number.POSITIVE_INFINITY
  }
  for (const r of runs) {
    if (r.outcome === 'ok' || r.outcome === 'wrong-bytes' || r.outcome === 'corrupt-served') continue
    const over = (m: FaultMarker, end: number): boolean => m.startMs <= r.endMs && end >= r.startMs
    if (markers.some((m) => m.kind === 'kill9' && over(m, m.recoveredMs ?? m.endMs))) r.excusedBy = 'kill9'
    else if (r.outcome === 'eio' && markers.some((m) => m.kind === 'outage' && over(m, m.endMs))) r.excusedBy = 'outage'
    // A new container during an outage, on a layer the restarted daemon has not re-opened yet:
    // its TOC cannot be fetched, so Prepare fails (the container never starts; no bytes read).
    else if (r.outcome === 'snapshotter-unavailable' && /unreachable|HTTP 5\d\d|unavailable: layer/.test(r.detail ?? '') && markers.some((m) => m.kind === 'outage' && over(m, m.endMs))) r.excusedBy = 'outage-create'
  }
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const log = opts.log ?? (() => undefined)
  const td = teardowns()
  const errors: string[] = []
  const startedAt = new Date().toISOString()
  try {
    const scratch = await daemonScratch(td, 'sgd-soak-')
    const registry = await startRegistry()
    td.teardown(() => registry.close())
    const proxy = await startFaultProxy(registry.url)
    td.teardown(() => proxy.close())

    log('building images')
    const images = await buildSoakImages({ dir: scratch.dir, registryHost: registry.host, registryDir: join(registry.dir, 'data'), names: opts.images, ...(opts.scale !== undefined ? { scale: opts.scale } : {}) })

    // The cache on its own small filesystem, so "disk full" can be injected without touching the host.
    const cacheFs = join(scratch.dir, 'cachefs')
    await mkdir(cacheFs, { recursive: true })
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${opts.cacheFsMiB}m,mode=0700`, 'tmpfs', cacheFs])
    td.teardown(() => { try { execFileSync('umount', ['-l', cacheFs]) } catch { /* already gone */ } })
    const cacheDir = join(cacheFs, 'chunks')
    const cfg = join(scratch.dir, 'config.toml')
    await writeFile(cfg, [
      'metrics_address = "127.0.0.1:0"',
      '[blob]', `fetching_timeout_sec = ${opts.readDeadlineSec}`,
      '[cache]', `dir = "${cacheDir}"`, `max_size_mb = ${opts.cacheCapMiB}`, '',
    ].join('\n'))
    const daemonArgs = ['--config', cfg, '--hosts-dir', join(scratch.dir, 'certs.d')]
    let sgd = await scratch.start(daemonArgs)
    const ctrd: Containerd = await startContainerd({ proxyPlugins: { stargz: { address: scratch.sock } } })
    td.teardown(() => ctrd.close())

    for (const img of images) {
      const r = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', `${proxy.host}/${img.repoTag}`], { timeoutMs: 600_000 })
      if (r.code !== 0) throw new Error(`rpull ${img.repoTag}: ${r.stderr}`)
    }
    log(`pulled ${images.length} images lazily`)

    const t0 = Date.now()
    const now = (): number => Date.now() - t0
    let kills = 0
    const daemonWarnings: Record<string, number> = {}
    const daemonWarningSamples: unknown[] = []
    const harvest = (p: StargzdProcess): void => {
      for (const l of p.logs) {
        if ((l.level ?? 0) < 40) continue
        const k = String(l.msg ?? '?')
        daemonWarnings[k] = (daemonWarnings[k] ?? 0) + 1
        if (daemonWarningSamples.length < 40 && (daemonWarnings[k] ?? 0) <= 3) daemonWarningSamples.push(l)
      }
      p.logs.length = 0
    }
    let restarting: Promise<void> | undefined
    const schedule = new FaultSchedule({
      proxy,
      fillerPath: join(cacheFs, 'filler'),
      now,
      kill9AndRestart: async () => {
        kills++
        restarting = (async () => {
          await sgd.kill9()
          harvest(sgd)
          sgd = await scratch.start(daemonArgs)
        })()
        await restarting
        log(`kill -9 #${kills}: daemon restarted (pid ${sgd.child.pid})`)
      },
    }, { slotMs: opts.slotMs, outageMs: opts.outageMs, burstCount: opts.burstCount ?? 20, ...(opts.faults ? { order: opts.faults } : {}) })

    const runs: RunRecord[] = []
    const samples: Sample[] = []
    let cacheMaxBytes = 0
    let stopping = false
    const endAt = opts.minutes * 60_000
    schedule.start()

    const runOne = async (img: SoakImage, id: string): Promise<void> => {
      const startMs = now()
      const ref = `${proxy.host}/${img.repoTag}`
      const timeoutMs = 180_000
      const r = await ctrd.ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, id, ...workloadCommand(img)], { timeoutMs })
      const endMs = now()
      const timedOut = r.code === -1 && endMs - startMs >= timeoutMs - 1000
      const v = verify(img, r.code, r.stdout, r.stderr, timedOut)
      const rec: RunRecord = { image: img.name, startMs, endMs, outcome: v.outcome, bytes: v.bytesChecked, files: v.filesChecked, ...(v.detail ? { detail: v.detail } : {}) }
      if (v.outcome !== 'ok') {
        // A failed run may leave its task, container and snapshot behind: clean up, as a user would.
        await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', id]).catch(() => undefined)
        await ctrd.ctr(['task', 'delete', '-f', id]).catch(() => undefined)
        await ctrd.ctr(['container', 'delete', id]).catch(() => undefined)
        log(`${id} ${img.name}: ${v.outcome}${rec.excusedBy ? ` (during ${rec.excusedBy})` : ''} ${(v.detail ?? '').replace(/\s+/g, ' ').slice(0, 200)}`)
      }
      runs.push(rec)
      // Do not spin on a daemon that is away: containerd's reconnect backoff outlasts the restart.
      if (v.outcome !== 'ok') await new Promise((r) => setTimeout(r, 1000))
    }

    let seq = 0
    const workers = Array.from({ length: opts.concurrency }, async (_, w) => {
      for (let i = w; !stopping && now() < endAt; i++) {
        if (restarting) await restarting.catch(() => undefined)
        const img = images[i % images.length] as SoakImage
        await runOne(img, `soak-${w}-${seq++}`)
      }
    })

    const sampler = (async () => {
      let lastRuns = 0
      while (!stopping) {
        await new Promise((r) => setTimeout(r, 5000))
        const slice = runs.slice(lastRuns)
        lastRuns = runs.length
        const failures: Partial<Record<Outcome, number>> = {}
        for (const r of slice) if (r.outcome !== 'ok') failures[r.outcome] = (failures[r.outcome] ?? 0) + 1
        const cacheBytes = await dirBytes(cacheDir)
        cacheMaxBytes = Math.max(cacheMaxBytes, cacheBytes)
        samples.push({
          tMs: now(), runsOk: slice.filter((r) => r.outcome === 'ok').length, failures,
          bytesVerified: slice.reduce((n, r) => n + r.bytes, 0),
          rssBytes: await rssOf(sgd.child.pid), loopP99Ms: await loopP99(sgd), cacheBytes, daemonPid: sgd.child.pid,
        })
      }
    })()

    await Promise.all(workers)
    stopping = true
    await schedule.stop()
    await sampler
    const durationMs = now()
    excuse(runs, schedule.markers)
    log(`${runs.length} runs in ${(durationMs / 1000).toFixed(0)} s; checking leaks`)

    // ---- end-of-run checks --------------------------------------------------------------------
    const lines = async (args: string[]): Promise<string[]> => (await ctrd.ctr(args)).stdout.split('\n').map((l) => l.trim()).filter(Boolean)
    const containers = (await lines(['containers', 'ls', '-q'])).length
    const tasks = (await lines(['tasks', 'ls', '-q'])).length
    const snapRows = (await lines(['snapshots', '--snapshotter', 'stargz', 'ls'])).slice(1)
    const activeSnapshots = snapRows.filter((l) => /\bActive\b/.test(l)).length
    const ctrdNames = new Set(snapRows.map((l) => l.split(/\s+/)[0] as string))
    const ours = await listStore(scratch.sock)
    // containerd's metadata layer names backend snapshots "<namespace>/<id>/<key>".
    const ourNames = new Set(ours.map((i) => i.name.replace(/^[^/]+\/\d+\//, '')))
    const missing = [...ctrdNames].filter((n) => !ourNames.has(n))
    const extra = [...ourNames].filter((n) => !ctrdNames.has(n))
    const storeAgrees = missing.length === 0 && extra.length === 0
    const storeDetail = `containerd ${ctrdNames.size}, daemon ${ourNames.size}; only in containerd: ${missing.length}, only in the daemon: ${extra.length}`
    const snapDirs = (await readdir(join(scratch.root, 'snapshots')).catch(() => [] as string[])).length
    const snapshotDirsVsStore = `${snapDirs} dirs, ${ours.length} records`
    const fuse = (await mountsUnder(scratch.root)).length
    const extraFuseMounts = Math.max(0, fuse - images.length)

    await ctrd.close()
    await sgd.close()
    harvest(sgd)
    const mountsAfterStop = (await mountsUnder(scratch.dir)).filter((m) => m !== cacheFs)
    const tempFiles = (await readdir(join(cacheDir, 'tmp')).catch(() => [] as string[])).length
    const processes = [...await pidsMentioning(scratch.dir, { substring: true }), ...await pidsMentioning(ctrd.dir, { substring: true })]

    return {
      options: opts, startedAt, durationMs,
      images: images.map((i) => ({ name: i.name, layerBytes: i.layerBytes, files: i.files.size })),
      runs, samples, markers: schedule.markers, blobGets: schedule.blobGets, resetsInjected: schedule.resetsInjected, kills,
      leaks: { containers, tasks, activeSnapshots, extraFuseMounts, mountsAfterStop, tempFiles, processes, snapshotDirsVsStore },
      storeAgrees, storeDetail, cacheMaxBytes, daemonWarnings, daemonWarningSamples, errors,
    }
  } finally {
    await td.run()
  }
}
