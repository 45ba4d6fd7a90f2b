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
import type { WanLink } from './link/wan-link.js'
import type { Workload } from './image/images.js'
import { startBenchContainerd, type BenchContainerd } from './containerd.js'
import { dropPageCache, onCleanup, runUntilLine, throwIfCancelled, timed } from './proc.js'
import { startBenchStargzd, type BenchStargzd } from './stargzd.js'

export const BENCH_MODES = ['legacy', 'estargz-noopt', 'estargz'] as const
export type BenchMode = (typeof BENCH_MODES)[number]

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
  firstLine: string
}

export interface MeasureOptions {
  mode: BenchMode
  /** Image reference as clients see it (through the link). */
  ref: string
  workload: Workload
  link: WanLink
  baseDir?: string
  dropCaches: boolean
  /** Per step; default 20 min (a full pull of the big image on a slow link). */
  stepTimeoutMs?: number
  /** stargzd config lines, e.g. ["no_background_fetch = true"]. */
  stargzdConfig?: string[]
  log?: (msg: string) => void
}

export async function measureOnce(o: MeasureOptions): Promise<RunSample> {
  const timeoutMs = o.stepTimeoutMs ?? 20 * 60_000
  const lazy = o.mode !== 'legacy'
  let sgd: BenchStargzd | undefined
  let ctrd: BenchContainerd | undefined
  const teardown = async (): Promise<void> => {
    const errors: string[] = []
    await ctrd?.close().catch((e: unknown) => errors.push(`containerd: ${(e as Error).message}`))
    await sgd?.close().catch((e: unknown) => errors.push(`stargzd: ${(e as Error).message}`))
    if (errors.length > 0) throw new Error(`teardown: ${errors.join('; ')}`)
  }
  const unregister = onCleanup(teardown)
  let sample: RunSample | undefined
  let failure: unknown
  try {
    throwIfCancelled()
    if (lazy) sgd = await startBenchStargzd({ ...(o.baseDir ? { baseDir: o.baseDir } : {}), ...(o.stargzdConfig ? { extraConfig: o.stargzdConfig } : {}) })
    // A signal's cleanup may have run while a daemon was starting: it is ours to close then.
    throwIfCancelled()
    ctrd = await startBenchContainerd({ ...(sgd ? { stargzSocket: sgd.socket } : {}), ...(o.baseDir ? { baseDir: o.baseDir } : {}) })
    throwIfCancelled()
    const c = ctrd
    const context = async (): Promise<string> => `\n--- containerd log ---\n${await c.logTail(25)}${sgd ? `\n--- stargzd log ---\n${sgd.logTail(25)}` : ''}`
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
    sample = {
      pull, create, run, total: pull + create + run, runToExit: r.exitMs / 1000,
      bytesFetched: after.bytesDown - before.bytesDown,
      bytesSent: after.bytesUp - before.bytesUp,
      connections: after.connections - before.connections,
      ...(fetched !== undefined ? { stargzdFetchedBytes: fetched } : {}),
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
  return sample
}
