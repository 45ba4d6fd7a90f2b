/**
 * Recording what a workload reads: the image's layers (already eStargz, from the stage-one
 * conversion or kept as they were) are mounted lazily — one FUSE mount per layer plus a writable
 * overlayfs — and every layer's `onFirstAccess` hook appends the file to the record. The FUSE
 * layer fires it on the first open of each regular file, so the record is per layer, in
 * first-access order, with no duplicates.
 */
import { mkdir, rm, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { openChunkCache } from '../cache/chunk-cache.js'
import { cleanEntryName } from '../estargz/entry-order.js'
import type { RangeSource, TocEntry } from '../estargz/types.js'
import { listMounts } from '../fuse/unmount.js'
import { LayerResolver } from '../layer/resolver.js'
import { ImageMount, type ImageSource, type LayerDescriptor } from '../mount/image-mount.js'
import type { ImageInput } from '../convert/image-io.js'
import type { SourceImage } from '../convert/image-plan.js'
import type { LayerOutcome } from '../convert/layer-job.js'
import { FileRangeSource } from '../estargz/file-source.js'
import type { PrioritizedRecord } from '../convert/prioritized-list.js'
import { runWorkload, workloadFor, type RunResult, type WorkloadOverrides } from './workload.js'

export interface RecordOptions {
  /** Scratch directory for mounts; created, and removed when empty of mounts. */
  stateDir: string
  periodMs: number
  overrides: WorkloadOverrides
  /** Where the workload's stdout and stderr go. */
  output?: NodeJS.WritableStream
  logger?: Logger
  signal?: AbortSignal
}

export interface Recording {
  records: PrioritizedRecord[]
  run: RunResult
}

/**
 * Mount `layers` (the stage-one eStargz layers of `image`, bottom first), run the workload, and
 * return the files it opened, each tagged with its source layer's digest and position.
 */
export async function recordAccesses(input: ImageInput, image: SourceImage, layers: LayerOutcome[], opts: RecordOptions): Promise<Recording> {
  const log = opts.logger ?? pino({ level: 'silent' })
  const records: PrioritizedRecord[] = []
  const descs: LayerDescriptor[] = layers.map((l) => ({ digest: l.desc.digest, size: l.desc.size, mediaType: l.desc.mediaType, ...(l.desc.annotations ? { annotations: l.desc.annotations } : {}) }))
  const position = new Map(descs.map((d, i) => [d, i]))
  const source: ImageSource = {
    resolveLayers: async () => ({ name: `${input.name}@${image.doc.digest}`, layers: descs }),
    blob: async (_ref, desc): Promise<RangeSource> => {
      const l = layers[position.get(desc) as number] as LayerOutcome
      return l.path !== undefined ? FileRangeSource.open(l.path) : input.openBlob(l.source)
    },
  }
  // Owns the cache, the decode pool and the layers; nothing is fetched ahead (the record must
  // show what the workload reads, not what prefetch brought).
  const resolver = new LayerResolver({ cache: await openChunkCache(undefined), logger: log, noPrefetch: true, noBackgroundFetch: true, ttlMs: 0 })
  const rootfs = join(opts.stateDir, 'rootfs')
  const state = join(opts.stateDir, 'state')
  await mkdir(rootfs, { recursive: true })
  await mkdir(state, { recursive: true })
  let mount: ImageMount | undefined
  try {
    mount = await ImageMount.mount(source, input.name, rootfs, {
      stateDir: state,
      rw: true,
      logger: log,
      ...(opts.signal ? { signal: opts.signal } : {}),
      resolver,
      onFirstAccess: (i: number, e: TocEntry) => {
        const src = layers[i] as LayerOutcome
        records.push({ path: '/' + cleanEntryName(e.name), layer: src.source.digest, layerIndex: i })
      },
    })
    const config = JSON.parse(image.config.toString('utf8')) as Record<string, unknown>
    const workload = await workloadFor(rootfs, config, opts.overrides)
    log.info({ argv: workload.argv, uid: workload.uid, cwd: workload.cwd }, 'workload-start')
    const run = await runWorkload(rootfs, workload, { periodMs: opts.periodMs, ...(opts.output ? { output: opts.output } : {}), ...(opts.signal ? { signal: opts.signal } : {}) })
    log.info({ ...run, files: records.length }, 'workload-done')
    return { records: [...records], run }
  } finally {
    await mount?.close()
    await resolver.close()
    // Remove the scratch dirs only when nothing is mounted under them any more.
    const busy = (await listMounts()).some((m) => m.mountpoint === opts.stateDir || m.mountpoint.startsWith(opts.stateDir + '/'))
    if (!busy) {
      await rm(state, { recursive: true, force: true })
      await rmdir(rootfs).catch(() => undefined)
    }
  }
}
