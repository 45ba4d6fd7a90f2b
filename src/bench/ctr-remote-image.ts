/**
 * The reference converter's forms of a bench image: what users have when they converted with
 * stargz-snapshotter's `ctr-remote`. Inside a private containerd (no snapshotter plugin needed
 * beyond overlayfs): pull the gzip image from the bench registry, then
 *   lazy:       ctr-remote image convert --oci --estargz SRC DST
 *   optimized:  ctr-remote image optimize --oci --entrypoint [...] --args [] SRC DST
 *               (runs the workload under runc and puts the files it opened first)
 * and push DST back to the same registry. Runs before the link exists, against 127.0.0.1.
 *
 * With `cacheDir`, each converted image is also copied into an OCI layout there (skopeo, digests
 * kept), keyed by the source manifest digest, the form and the workload; a later bench run pushes
 * the cached layout instead of converting again (the huge image took minutes per form).
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
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
  /** Keep converted images here (see the file comment); needs `sourceDigest`. */
  cacheDir?: string
  /** Manifest digest of the source image (the cache key). */
  sourceDigest?: string
  log: (msg: string) => void
}

function cachePath(o: CtrRemoteConvertOptions, form: 'lazy' | 'optimized'): string | undefined {
  if (o.cacheDir === undefined || o.sourceDigest === undefined) return undefined
  const key = createHash('sha256').update(JSON.stringify([o.sourceDigest, form, form === 'optimized' ? o.workload : []])).digest('hex').slice(0, 16)
  return join(o.cacheDir, `${form}-${key}`)
}

const skopeo = (args: string[]): Promise<unknown> => mustRun('skopeo', ['copy', '--quiet', '--preserve-digests', ...args], { timeoutMs: 20 * 60_000 })

/** Push the cached form, if there is one. */
async function fromCache(o: CtrRemoteConvertOptions, form: 'lazy' | 'optimized', target: string): Promise<boolean> {
  const dir = cachePath(o, form)
  if (dir === undefined || !existsSync(join(dir, 'index.json'))) return false
  await skopeo(['--dest-tls-verify=false', `oci:${dir}:bench`, `docker://${o.registry}/${target}`])
  o.log(`ctr-remote ${form} form of ${o.source} pushed from ${dir}`)
  return true
}

async function toCache(o: CtrRemoteConvertOptions, form: 'lazy' | 'optimized', target: string): Promise<void> {
  const dir = cachePath(o, form)
  if (dir === undefined) return
  const partial = `${dir}.partial-${process.pid}`
  await rm(partial, { recursive: true, force: true })
  await mkdir(partial, { recursive: true })
  await skopeo(['--src-tls-verify=false', `docker://${o.registry}/${target}`, `oci:${partial}:bench`])
  await rm(dir, { recursive: true, force: true })
  await rename(partial, dir)
}

export async function ctrRemoteConvert(o: CtrRemoteConvertOptions): Promise<void> {
  const lazyCached = o.lazyTarget !== undefined && await fromCache(o, 'lazy', o.lazyTarget)
  const optCached = o.optimizedTarget !== undefined && await fromCache(o, 'optimized', o.optimizedTarget)
  if ((o.lazyTarget === undefined || lazyCached) && (o.optimizedTarget === undefined || optCached)) return
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
    if (o.lazyTarget && !lazyCached) {
      const t0 = performance.now()
      const dst = `${o.registry}/${o.lazyTarget}`
      await mustRun(remoteBin, [...rg, 'image', 'convert', '--oci', '--estargz', src, dst], { timeoutMs })
      await push(dst)
      await toCache(o, 'lazy', o.lazyTarget)
      o.log(`ctr-remote convert → ${o.lazyTarget} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    }
    if (o.optimizedTarget && !optCached) {
      const t0 = performance.now()
      const dst = `${o.registry}/${o.optimizedTarget}`
      const [entry, ...args] = o.workload
      await mustRun(remoteBin, [...rg, 'image', 'optimize', '--oci', '--period', '5',
        '--entrypoint', JSON.stringify([entry]), '--args', JSON.stringify(args), src, dst], { timeoutMs })
      await push(dst)
      await toCache(o, 'optimized', o.optimizedTarget)
      o.log(`ctr-remote optimize → ${o.optimizedTarget} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    }
  } finally {
    await ctrd.close()
  }
}
