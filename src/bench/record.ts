/**
 * The optimized image's prioritized files: the unoptimized eStargz image (from its local OCI
 * layout) is mounted lazily — a FUSE mount per layer, writable overlayfs on top (ImageMount) —
 * each layer's `onFirstAccess` hook records the files it serves, in first-open order, and the
 * image's workload runs once in that rootfs (private mount + PID namespace, chrooted; the runner
 * of `stargz optimize`, src/optimize/workload.ts), bounded by a timeout. The same principle as
 * `stargz optimize` / `ctr-remote image optimize`; here the record is per layer index so the
 * conversion can put each layer's files first in that layer.
 *
 * Cached as JSON next to the eStargz layouts, keyed by the unoptimized manifest digest and the
 * workload.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { openChunkCache } from '../cache/chunk-cache.js'
import { cleanEntryName } from '../estargz/entry-order.js'
import { FileRangeSource } from '../estargz/file-source.js'
import type { TocEntry } from '../estargz/types.js'
import { LayerResolver } from '../layer/resolver.js'
import { silentLogger } from '../log/logger.js'
import { ImageMount, type ImageSource, type LayerDescriptor } from '../mount/image-mount.js'
import { runWorkload, workloadFor } from '../optimize/workload.js'
import type { BuiltLayout } from './image/oci-image.js'
import { mountsUnder, onCleanup } from './proc.js'

export interface RecordResult {
  /** Per layer (0 = bottom): absolute paths in first-access order. */
  perLayer: string[][]
  /** Total files recorded. */
  files: number
  output: string
  cached: boolean
}

const FORMAT = 1

export interface RecordOptions {
  /** Workload argv (replaces the image's entrypoint + cmd). */
  args: string[]
  /** A line the workload prints when it worked (checked, so a broken record is not cached). */
  expect: string
  timeoutMs?: number
  fixtureDir: string
  /** Scratch parent dir; default the fixture dir's bench-estargz/tmp. */
  tmpDir?: string
  log?: (msg: string) => void
}

export async function recordAccessedFiles(layout: BuiltLayout, opts: RecordOptions): Promise<RecordResult> {
  const log = opts.log ?? (() => undefined)
  const key = createHash('sha256').update(JSON.stringify({ format: FORMAT, image: layout.manifest.digest, args: opts.args })).digest('hex').slice(0, 16)
  const cacheDir = join(opts.fixtureDir, 'bench-estargz')
  const cachePath = join(cacheDir, `prioritized-${layout.tag}-${key}.json`)
  if (existsSync(cachePath)) {
    const r = JSON.parse(await readFile(cachePath, 'utf8')) as RecordResult
    log(`${layout.tag}: recorded file list cached (${r.files} files)`)
    return { ...r, cached: true }
  }

  const scratchParent = opts.tmpDir ?? join(cacheDir, 'tmp')
  await mkdir(scratchParent, { recursive: true })
  const scratch = await mkdtemp(join(scratchParent, 'record-'))
  const rootfs = join(scratch, 'rootfs')
  const state = join(scratch, 'state')
  await mkdir(rootfs)
  await mkdir(state)
  const perLayer: string[][] = layout.layers.map(() => [])
  const descs: LayerDescriptor[] = layout.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType, ...(l.annotations ? { annotations: l.annotations } : {}) }))
  const source: ImageSource = {
    resolveLayers: async () => ({ name: layout.tag, layers: descs }),
    blob: (_ref, desc) => FileRangeSource.open(join(layout.dir, 'blobs', 'sha256', desc.digest.slice(7))),
  }
  const logger = silentLogger()
  // Owns the cache, the decode pool and the layers; no prefetch, so the record is the workload's.
  const resolver = new LayerResolver({ cache: await openChunkCache(undefined, { memoryBytes: 512 << 20 }), logger, noPrefetch: true, noBackgroundFetch: true, ttlMs: 0 })
  let mount: ImageMount | undefined
  let unregister = (): void => undefined
  const t0 = performance.now()
  try {
    mount = await ImageMount.mount(source, layout.tag, rootfs, {
      stateDir: state,
      rw: true,
      logger,
      resolver,
      onFirstAccess: (i: number, e: TocEntry) => { perLayer[i]?.push('/' + cleanEntryName(e.name)) },
    })
    const m = mount
    unregister = onCleanup(() => m.close())
    const config = JSON.parse(await readFile(join(layout.dir, 'blobs', 'sha256', layout.config.digest.slice(7)), 'utf8')) as Record<string, unknown>
    const workload = await workloadFor(rootfs, config, { command: opts.args })
    let output = ''
    const sink = new PassThrough()
    sink.setEncoding('utf8').on('data', (d: string) => { output = (output + d).slice(-8000) })
    const r = await runWorkload(rootfs, workload, { periodMs: opts.timeoutMs ?? 60_000, output: sink })
    const ok = r.exitCode === 0 && output.split('\n').some((l) => l.startsWith(opts.expect))
    if (!ok) throw new Error(`recording ${layout.tag}: workload ${opts.args.join(' ')} did not succeed (exit ${r.exitCode ?? r.signal}${r.timedOut ? ', timed out' : ''}): ${output.trim().slice(-1000)}`)
    const files = perLayer.reduce((n, l) => n + l.length, 0)
    log(`${layout.tag}: recorded ${files} files (${perLayer.map((l) => l.length).join(' + ')}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    const result: RecordResult = { perLayer, files, output, cached: false }
    const tmp = `${cachePath}.${process.pid}.tmp`
    await writeFile(tmp, JSON.stringify(result, null, 1) + '\n')
    await rename(tmp, cachePath)
    return result
  } finally {
    await mount?.close()
    unregister()
    await resolver.close().catch(() => undefined)
    if ((await mountsUnder(scratch)).length === 0) {
      await rm(state, { recursive: true, force: true })
      await rm(join(rootfs), { recursive: true, force: true }).catch(() => rmdir(rootfs))
      await rm(scratch, { recursive: true, force: true })
    }
  }
}
