/**
 * The soak: real docker-registry behind the fault proxy, stargzd (real FUSE, background fetch on,
 * a small chunk cache on its own tmpfs) and real containerd + runc running containers from the
 * soak images in a loop, N at a time, while FaultSchedule injects faults. By default stargzd runs
 * with stargz-fused (`--fuse-manager default`, the restart design of issue #11): the registry
 * client, the chunk cache and the FUSE mounts live in stargz-fused, so a kill -9 of stargzd must
 * not fail a running container's read. Every 5 s a sample of both processes (RSS; event-loop
 * delay p99 from stargzd's metrics; cache bytes on disk) and of the workloads (runs, bytes
 * verified, failures by kind). At the end: leaks (containers, tasks, snapshots, mounts, temp
 * files, processes) and whether containerd's snapshots and the daemon's agree.
 *
 * Everything started here is stopped and unmounted in reverse order, also when a step throws.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { startContainerd, mountsUnder, type Containerd } from '../containerd.js'
import { startRegistry } from '../registry.js'
import { startFaultProxy } from '../fault-proxy.js'
import { daemonScratch, type StargzdProcess } from '../stargzd.js'
import { fusedPid, startFused, stopFused, waitGone } from '../fused.js'
import { metricsAddress } from '../ports.js'
import { pidsMentioning } from '../../src/bench/proc.js'
import { snapshotsClientConstructor } from '../../src/grpc/proto.js'
import { buildSoakImages, type ImageName, type SoakImage } from './images.js'
import { stdioLost, verify, workloadCommand, type Outcome } from './workloads.js'
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
  /** [blob] fetching_timeout_sec: the read deadline. An outage longer than it may fail reads (EIO) and creates. */
  readDeadlineSec: number
  /** Run stargzd with stargz-fused (`--fuse-manager default`). Default true. */
  fused?: boolean
  log?: (line: string) => void
}

export interface RunRecord {
  image: ImageName; startMs: number; endMs: number; outcome: Outcome; excusedBy?: string; bytes: number; files: number; detail?: string
  /** ctr's stdout had less than the workload wrote to its output file (the file was used). */
  stdioLost?: boolean
}

export interface Sample {
  tMs: number; runsOk: number; failures: Partial<Record<Outcome, number>>; bytesVerified: number
  /** stargzd's RSS; with stargz-fused, fusedRssBytes is the process that reads and caches. */
  rssBytes: number | undefined; loopP99Ms: number | undefined; cacheBytes: number; daemonPid: number | undefined
  fusedRssBytes?: number | undefined; fusedPid?: number | undefined
}

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
  fusedKills: number
  /** Runs whose ctr stdout lost output the workload wrote (see workloads.ts). */
  stdioLost: number
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

/**
 * Bytes of the files under `dir`. For the cache root, tmp/ is walked last: files only move from
 * tmp/ into a shard (rename), so walking the shards first can never count one file twice (last
 * round's sampler did, 3.7 KB "over" a 24 MiB cap).
 */
async function dirBytes(dir: string): Promise<number> {
  let n = 0
  let names: string[]
  try { names = await readdir(dir) } catch { return 0 }
  names.sort((a, b) => Number(a === 'tmp') - Number(b === 'tmp'))
  for (const name of names) {
    const p = join(dir, name)
    try {
      const s = await stat(p)
      n += s.isDirectory() ? await dirBytes(p) : s.size
    } catch { /* evicted while we looked */ }
  }
  return n
}

/**
 * dirBytes with the cache's owner stopped (SIGSTOP) for the walk, so the figure is the directory
 * at one instant. A walk while the process writes and evicts sums files from different moments
 * (one evicted after its shard was walked, another written before tmp/ was), which can read over
 * the cap although the directory never was (a 4-minute `--kill-fused` run read 392 KB over, once,
 * in the write burst after an outage at load 30). SIGCONT in finally, also if the walk throws.
 */
async function frozenDirBytes(dir: string, pid: number | undefined): Promise<number> {
  let stopped = false
  if (pid !== undefined) { try { process.kill(pid, 'SIGSTOP'); stopped = true } catch { /* gone: nothing to freeze */ } }
  try {
    return await dirBytes(dir)
  } finally {
    if (stopped) { try { process.kill(pid as number, 'SIGCONT') } catch { /* gone */ } }
  }
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
 * Which failures the soak allows (issue #17). Never wrong bytes, never the corrupted layer's bytes.
 *
 * - An outage longer than the read deadline: a run that overlapped it may fail with EIO (a read
 *   out of time) or a clear create error (the layer's blob check or open answered 5xx). Shorter
 *   outages and 5xx/429 bursts are within the deadline and must be invisible.
 * - kill -9 of stargzd: from the kill until the first container started after the restart ran
 *   ok, a create may be refused with a clear "snapshotter unavailable" (containerd cannot reach
 *   the socket, then backs off its reconnect). With stargz-fused the mounts and reads live on in
 *   stargz-fused, so reads of running containers are NOT excused; without it (fused: false) the
 *   FUSE mounts die with the daemon and anything but wrong bytes is excused.
 * - kill -9 of stargz-fused (restarted a second later, as Restart= would): with fuseproto (#11)
 *   the fd holder keeps the mounts and the new stargz-fused re-serves them, so as for stargzd only
 *   refused creates are excused in that window; reads of running containers must not fail.
 */
export function excuse(runs: RunRecord[], markers: FaultMarker[], opts: { fused: boolean; outageMs: number; readDeadlineSec: number }): void {
  for (const m of markers) {
    if (m.kind !== 'kill9' && m.kind !== 'kill9-fused') continue
    const first = runs.filter((r) => r.outcome === 'ok' && r.startMs >= m.endMs).sort((a, b) => a.endMs - b.endMs)[0]
    m.recoveredMs = first?.endMs ?? Number.POSITIVE_INFINITY
  }
  const longOutage = opts.outageMs > opts.readDeadlineSec * 1000
  const clearCreateError = /unreachable|HTTP 5\d\d|HTTP 429|unavailable: layer|is unavailable/
  for (const r of runs) {
    delete r.excusedBy
    if (r.outcome === 'ok' || r.outcome === 'wrong-bytes' || r.outcome === 'corrupt-served') continue
    const over = (m: FaultMarker, end: number): boolean => m.startMs <= r.endMs && end >= r.startMs
    const inKill = (kind: FaultKind): boolean => markers.some((m) => m.kind === kind && over(m, m.recoveredMs ?? m.endMs))
    if (inKill('kill9-fused') && r.outcome === 'snapshotter-unavailable') r.excusedBy = 'kill9-fused'
    else if (inKill('kill9') && (!opts.fused || r.outcome === 'snapshotter-unavailable')) r.excusedBy = 'kill9'
    else if (longOutage && markers.some((m) => m.kind === 'outage' && over(m, m.endMs))) {
      if (r.outcome === 'eio') r.excusedBy = 'outage'
      else if (r.outcome === 'snapshotter-unavailable' && clearCreateError.test(r.detail ?? '')) r.excusedBy = 'outage-create'
    }
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
    const fused = opts.fused ?? true
    const daemonArgs = ['--config', cfg, '--hosts-dir', join(scratch.dir, 'certs.d'), ...(fused ? ['--fuse-manager', 'default'] : [])]
    // stargz-fused outlives stargzd by design: stopped (SIGTERM: it unmounts its layers) before
    // the scratch dir's teardown unmounts and removes what is left.
    if (fused) td.teardown(() => stopFused(scratch.root))
    let sgd = await scratch.start(daemonArgs)
    const outRoot = join(scratch.dir, 'out')
    await mkdir(outRoot, { recursive: true })
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
    let fusedKills = 0
    let stdioLostRuns = 0
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
      kill9Fused: async () => {
        // kill -9 of stargz-fused, then a new one a second later, as systemd's Restart= would:
        // the fd holder keeps each /dev/fuse connection open, the new stargz-fused adopts them
        // (fuseproto, #11), so running containers' reads block, then succeed. stargzd stays up.
        fusedKills++
        restarting = (async () => {
          const pid = await fusedPid(scratch.root)
          if (pid !== undefined) {
            try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
            await waitGone(pid)
          }
          await new Promise((r) => setTimeout(r, 1000))
          await startFused(scratch.root, ['--root', scratch.root, '--address', scratch.sock, ...daemonArgs])
        })()
        await restarting
        log(`kill -9 of stargz-fused #${fusedKills}: new stargz-fused ${await fusedPid(scratch.root)}`)
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
      const out = join(outRoot, id)
      await mkdir(out, { recursive: true })
      const r = await ctrd.ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), '--mount', `type=bind,src=${out},dst=/soak-out,options=rbind:rw`, ref, id, ...workloadCommand(img)], { timeoutMs })
      const endMs = now()
      const timedOut = r.code === -1 && endMs - startMs >= timeoutMs - 1000
      const files = { stdout: await readFile(join(out, 'stdout'), 'utf8').catch(() => undefined), stderr: await readFile(join(out, 'stderr'), 'utf8').catch(() => undefined) }
      await rm(out, { recursive: true, force: true })
      const v = verify(img, r.code, r.stdout, r.stderr, timedOut, { ...(files.stdout !== undefined ? { stdout: files.stdout } : {}), ...(files.stderr !== undefined ? { stderr: files.stderr } : {}) })
      // Only a run that exited 0 ran its wrapper's `cat` of the file; a failed one may not have.
      const lost = r.code === 0 && stdioLost(r.stdout, { ...(files.stdout !== undefined ? { stdout: files.stdout } : {}) })
      if (lost) { stdioLostRuns++; log(`${id} ${img.name}: ctr stdout ${r.stdout.length} bytes, the workload wrote ${files.stdout?.length} (exit ${r.code}); verified from the output file`) }
      const rec: RunRecord = { image: img.name, startMs, endMs, outcome: v.outcome, bytes: v.bytesChecked, files: v.filesChecked, ...(v.detail ? { detail: v.detail } : {}), ...(lost ? { stdioLost: true } : {}) }
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
        const fpid = fused ? await fusedPid(scratch.root) : undefined
        const cacheBytes = await frozenDirBytes(cacheDir, fused ? fpid : sgd.child.pid)
        cacheMaxBytes = Math.max(cacheMaxBytes, cacheBytes)
        samples.push({
          tMs: now(), runsOk: slice.filter((r) => r.outcome === 'ok').length, failures,
          bytesVerified: slice.reduce((n, r) => n + r.bytes, 0),
          rssBytes: await rssOf(sgd.child.pid), loopP99Ms: await loopP99(sgd), cacheBytes, daemonPid: sgd.child.pid,
          ...(fused ? { fusedRssBytes: await rssOf(fpid), fusedPid: fpid } : {}),
        })
      }
    })()

    await Promise.all(workers)
    stopping = true
    await schedule.stop()
    await sampler
    const durationMs = now()
    excuse(runs, schedule.markers, { fused, outageMs: opts.outageMs, readDeadlineSec: opts.readDeadlineSec })
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
    if (fused) {
      await stopFused(scratch.root)
      // stargz-fused logs to a file beside its socket: its warnings count with stargzd's.
      const text = await readFile(join(scratch.root, 'fused.sock.log'), 'utf8').catch(() => '')
      for (const line of text.split('\n')) {
        let l: { level?: number; msg?: unknown }
        try { l = JSON.parse(line) as typeof l } catch { continue }
        if ((l.level ?? 0) < 40) continue
        const k = `fused: ${String(l.msg ?? '?')}`
        daemonWarnings[k] = (daemonWarnings[k] ?? 0) + 1
        if (daemonWarningSamples.length < 60 && (daemonWarnings[k] ?? 0) <= 3) daemonWarningSamples.push(l)
      }
    }
    const mountsAfterStop = (await mountsUnder(scratch.dir)).filter((m) => m !== cacheFs)
    const tempFiles = (await readdir(join(cacheDir, 'tmp')).catch(() => [] as string[])).length
    const processes = [...await pidsMentioning(scratch.dir, { substring: true }), ...await pidsMentioning(ctrd.dir, { substring: true })]

    return {
      options: opts, startedAt, durationMs,
      images: images.map((i) => ({ name: i.name, layerBytes: i.layerBytes, files: i.files.size })),
      runs, samples, markers: schedule.markers, blobGets: schedule.blobGets, resetsInjected: schedule.resetsInjected, kills, fusedKills, stdioLost: stdioLostRuns,
      leaks: { containers, tasks, activeSnapshots, extraFuseMounts, mountsAfterStop, tempFiles, processes, snapshotDirsVsStore },
      storeAgrees, storeDetail, cacheMaxBytes, daemonWarnings, daemonWarningSamples, errors,
    }
  } finally {
    await td.run()
  }
}
