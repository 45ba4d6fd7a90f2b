/**
 * One cold start-up measurement of one image in one mode:
 *
 *   fresh stargzd (estargz modes: empty root and cache) → fresh containerd (empty root) →
 *   drop the page cache → link counters →
 *   pull    legacy:  ctr images pull --snapshotter overlayfs REF        (fetch + unpack everything)
 *           estargz: ctr-remote images rpull --snapshotter stargz REF   (lazy: layers mounted)
 *   create  ctr containers create --snapshotter S REF ID ARGS…          (rootfs snapshot + spec)
 *   run     ctr tasks start ID, until the workload's first output line  (shim, runc, the process)
 *   → link counters, stargzd's fetched-bytes counter → tear everything down.
 *
 * Bytes fetched are the link's (registry → client) during pull + create + run; stargzd keeps
 * fetching in the background in the estargz modes (as it would in production), so whatever it
 * fetched by the time the first output line arrived counts too.
 */
import { randomBytes } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import type { WanLink } from './link/wan-link.js'
import type { Workload } from './image/images.js'
import { startBenchContainerd, type BenchContainerd } from './containerd.js'
import { dropPageCache, onCleanup, runUntilLine, throwIfCancelled, timed } from './proc.js'
import { baselineDaemonCommand, builtDaemonCommand, startBenchStargzd, type BenchStargzd } from './stargzd.js'
import { startBenchReference, type BenchReference } from './reference.js'

/**
 * Image forms: the gzip original (full pull), converted by `stargz convert` (estargz-noopt,
 * estargz = optimized) and converted by the reference's `ctr-remote` (ctr-remote-noopt,
 * ctr-remote = `ctr-remote image optimize`); gzindex = the gzip original plus a `stargz index`
 * pushed beside it (src/gzindex), pulled lazily like the estargz modes.
 */
export const BENCH_MODES = ['legacy', 'estargz-noopt', 'estargz', 'ctr-remote-noopt', 'ctr-remote', 'gzindex'] as const
export type BenchMode = (typeof BENCH_MODES)[number]
/**
 * Which snapshotter serves the lazy modes: stargzd, the reference daemon (src/bench/reference.ts),
 * or stargzd from another source tree (`baselineDir`: the before of a change).
 */
export const BENCH_DAEMONS = ['ours', 'reference', 'baseline'] as const
export type BenchDaemon = (typeof BENCH_DAEMONS)[number]

export interface RunSample {
  /** Seconds. */
  pull: number
  create: number
  /** `ctr tasks start` until the first output line. */
  run: number
  total: number
  /** Seconds from `ctr tasks start` until it exited (the workload's whole run). */
  runToExit: number
  /** Registry → client bytes through the link during pull + create + run. */
  bytesFetched: number
  /** Client → registry bytes (requests). */
  bytesSent: number
  /** Connections opened through the link. */
  connections: number
  /** stargzd_fetched_bytes_total at the end of the run (estargz modes). */
  stargzdFetchedBytes?: number
  /** Registry requests for blobs (GET and HEAD) during pull + create + run, from its access log. */
  blobRequests?: number
  /** Timeline of the run (registry requests, snapshotter calls), when asked for. */
  timeline?: string
  firstLine: string
}

export interface MeasureOptions {
  mode: BenchMode
  /** Image reference as clients see it (through the link). */
  ref: string
  workload: Workload
  link: WanLink
  /** Lazy modes: which snapshotter; default ours. */
  daemon?: BenchDaemon
  /** daemon 'baseline': the source tree whose daemon/stargzd.ts runs. */
  baselineDir?: string
  /** Registry access log (counted for blobRequests). */
  registryLog?: string
  /** Keep a timeline of this run in the sample. */
  timeline?: boolean
  baseDir?: string
  dropCaches: boolean
  /** Per step; default 20 min (a full pull of the big image on a slow link). */
  stepTimeoutMs?: number
  /** stargzd config lines, e.g. ["no_background_fetch = true"]. */
  stargzdConfig?: string[]
  backgroundFetch?: boolean
  log?: (msg: string) => void
}

export async function measureOnce(o: MeasureOptions): Promise<RunSample> {
  const timeoutMs = o.stepTimeoutMs ?? 20 * 60_000
  const lazy = o.mode !== 'legacy'
  const useRef = lazy && o.daemon === 'reference'
  let sgd: BenchStargzd | undefined
  let refd: BenchReference | undefined
  let ctrd: BenchContainerd | undefined
  let timelineText: string | undefined
  const teardown = async (): Promise<void> => {
    const errors: string[] = []
    await ctrd?.close().catch((e: unknown) => errors.push(`containerd: ${(e as Error).message}`))
    if (o.timeline && refd) timelineText = (timelineText ?? '') + `\n--- reference -grpc-log ---\n${await readFile(refd.grpcLogPath, 'utf8').catch(() => '')}`
    await sgd?.close().catch((e: unknown) => errors.push(`stargzd: ${(e as Error).message}`))
    await refd?.close().catch((e: unknown) => errors.push(`reference: ${(e as Error).message}`))
    if (errors.length > 0) throw new Error(`teardown: ${errors.join('; ')}`)
  }
  const unregister = onCleanup(teardown)
  let sample: RunSample | undefined
  let failure: unknown
  try {
    throwIfCancelled()
    if (useRef) {
      refd = await startBenchReference({ registryHost: o.link.address, noBackgroundFetch: o.backgroundFetch === false, ...(o.baseDir ? { baseDir: o.baseDir } : {}) })
    } else if (lazy) {
      const command = o.daemon === 'baseline' ? baselineDaemonCommand(o.baselineDir ?? '.') : await builtDaemonCommand()
      sgd = await startBenchStargzd({ command, ...(o.baseDir ? { baseDir: o.baseDir } : {}), ...(o.stargzdConfig ? { extraConfig: o.stargzdConfig } : {}), ...(o.timeline ? { logLevel: 'debug' as const } : {}) })
    }
    // A signal's cleanup may have run while a daemon was starting: it is ours to close then.
    throwIfCancelled()
    const snapSocket = sgd?.socket ?? refd?.socket
    ctrd = await startBenchContainerd({ ...(snapSocket ? { stargzSocket: snapSocket } : {}), ...(o.baseDir ? { baseDir: o.baseDir } : {}) })
    throwIfCancelled()
    const c = ctrd
    const context = async (): Promise<string> => `\n--- containerd log ---\n${await c.logTail(25)}${sgd ? `\n--- stargzd log ---\n${sgd.logTail(25)}` : ''}${refd ? `\n--- reference log ---\n${await refd.logTail(25)}` : ''}`
    const logStart = o.registryLog ? (await stat(o.registryLog).catch(() => undefined))?.size ?? 0 : 0
    if (o.dropCaches) await dropPageCache()
    const snapshotter = lazy ? 'stargz' : 'overlayfs'
    const id = `bench-${randomBytes(4).toString('hex')}`
    const before = await o.link.stats()

    const [ctrBin, ctrGlobal] = c.ctrArgv()
    const [remoteBin, remoteGlobal] = c.ctrRemoteArgv()
    const step = async (what: string, cmd: string, args: string[]): Promise<number> => {
      try {
        return (await timed(cmd, args, { timeoutMs })).ms / 1000
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}${await context()}`, { cause: e })
      }
    }
    const pull = lazy
      ? await step('pull', remoteBin, [...remoteGlobal, 'images', 'rpull', '--plain-http', '--snapshotter', snapshotter, o.ref])
      : await step('pull', ctrBin, [...ctrGlobal, 'images', 'pull', '--plain-http', '--snapshotter', snapshotter, o.ref])
    o.log?.(`    pull ${pull.toFixed(2)} s`)
    // `--`: otherwise ctr takes the workload's own flags (python3 -c …) as its own.
    const create = await step('create', ctrBin, [...ctrGlobal, 'containers', 'create', '--snapshotter', snapshotter, '--', o.ref, id, ...o.workload.args])
    const expect = o.workload.expect
    const r = await runUntilLine(ctrBin, [...ctrGlobal, 'tasks', 'start', '--fifo-dir', c.fifoDir, id], (l) => l.startsWith(expect), { timeoutMs })
    if (r.lineMs === undefined || r.code !== 0) {
      throw new Error(`run: ctr tasks start ${id} exited ${r.code}${r.lineMs === undefined ? ` without a line starting with ${JSON.stringify(expect)}` : ''}: ` +
        `${(r.stdout + r.stderr).trim().slice(-1500)}${await context()}`)
    }
    const after = await o.link.stats()
    const fetched = sgd ? await sgd.fetchedBytes() : undefined
    const run = r.lineMs / 1000
    let blobRequests: number | undefined
    if (o.registryLog) {
      const text = (await readFile(o.registryLog)).subarray(logStart).toString('utf8')
      const reqs = text.split('\n').filter((l) => /"(GET|HEAD) \/v2\/[^"]*\/blobs\//.test(l))
      blobRequests = reqs.length
      if (o.timeline) timelineText = `--- registry blob requests (${reqs.length}) ---\n${reqs.join('\n')}\n`
    }
    if (o.timeline && sgd) timelineText = (timelineText ?? '') + `\n--- stargzd log (last 400 lines) ---\n${sgd.logTail(400)}\n`
    sample = {
      pull, create, run, total: pull + create + run, runToExit: r.exitMs / 1000,
      bytesFetched: after.bytesDown - before.bytesDown,
      bytesSent: after.bytesUp - before.bytesUp,
      connections: after.connections - before.connections,
      ...(fetched !== undefined ? { stargzdFetchedBytes: fetched } : {}),
      ...(blobRequests !== undefined ? { blobRequests } : {}),
      firstLine: r.line ?? '',
    }
  } catch (e) {
    failure = e
  }
  // After a signal a step fails because its daemon was closed under it: report the signal.
  try { throwIfCancelled() } catch (e) { failure = e }
  try {
    await teardown()
  } catch (e) {
    failure ??= e
  } finally {
    unregister()
  }
  if (failure !== undefined || sample === undefined) throw failure instanceof Error ? failure : new Error(String(failure))
  if (timelineText !== undefined) sample.timeline = timelineText
  return sample
}
