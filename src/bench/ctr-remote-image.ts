/**
 * The reference converter's forms of a bench image: what users have when they converted with
 * stargz-snapshotter's `ctr-remote`. Inside a private containerd (no snapshotter plugin needed
 * beyond overlayfs): pull the gzip image from the bench registry, then
 *   lazy:       ctr-remote image convert --oci --estargz SRC DST
 *   optimized:  ctr-remote image optimize --oci --entrypoint [...] --args [] SRC DST
 *               (runs the workload under runc and puts the files it opened first)
 * and push DST back to the same registry. Runs before the link exists, against 127.0.0.1.
 */
import { startBenchContainerd } from './containerd.js'
import { mustRun } from './proc.js'

export interface CtrRemoteConvertOptions {
  /** Registry HOST:PORT (direct, plain HTTP). */
  registry: string
  /** Repository path and tag of the pushed gzip image, e.g. bench/python3:legacy. */
  source: string
  /** Targets to produce (repository path and tag). */
  lazyTarget?: string
  optimizedTarget?: string
  workload: string[]
  baseDir?: string
  log: (msg: string) => void
}

export async function ctrRemoteConvert(o: CtrRemoteConvertOptions): Promise<void> {
  const ctrd = await startBenchContainerd(o.baseDir ? { baseDir: o.baseDir } : {})
  try {
    const [ctrBin, g] = ctrd.ctrArgv()
    const [remoteBin, rg] = ctrd.ctrRemoteArgv()
    const src = `${o.registry}/${o.source}`
    const timeoutMs = 20 * 60_000
    await mustRun(ctrBin, [...g, 'images', 'pull', '--plain-http', src], { timeoutMs })
    const push = async (dst: string): Promise<void> => {
      await mustRun(ctrBin, [...g, 'images', 'push', '--plain-http', dst], { timeoutMs })
    }
    if (o.lazyTarget) {
      const t0 = performance.now()
      const dst = `${o.registry}/${o.lazyTarget}`
      await mustRun(remoteBin, [...rg, 'image', 'convert', '--oci', '--estargz', src, dst], { timeoutMs })
      await push(dst)
      o.log(`ctr-remote convert → ${o.lazyTarget} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    }
    if (o.optimizedTarget) {
      const t0 = performance.now()
      const dst = `${o.registry}/${o.optimizedTarget}`
      const [entry, ...args] = o.workload
      await mustRun(remoteBin, [...rg, 'image', 'optimize', '--oci', '--period', '5',
        '--entrypoint', JSON.stringify([entry]), '--args', JSON.stringify(args), src, dst], { timeoutMs })
      await push(dst)
      o.log(`ctr-remote optimize → ${o.optimizedTarget} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    }
  } finally {
    await ctrd.close()
  }
}
