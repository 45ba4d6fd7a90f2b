/**
 * Mount a whole image: each layer on its own FUSE mount under the state dir, then overlayfs at
 * the mountpoint.
 *
 *   <state>/layers/<i>/        FUSE mount of layer i (0 = bottom)
 *   <state>/full/<i>/layer.tar a non-eStargz layer fetched whole (--allow-full-fetch)
 *   <state>/upper, <state>/work   with --rw
 *
 * Every step registers its undo; a failing step undoes the earlier ones, and close() undoes
 * everything (overlay first, then the layers), so nothing is left mounted either way.
 */
import { mkdir, rm, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { FailedPreconditionError, errorMessage, isNotEstargz } from '../errors.js'
import type { RangeSource, TocEntry } from '../estargz/types.js'
import type { ExternalTocSource } from '../estargz/external-toc.js'
import type { LayerMountOptions } from '../fuse/layer-fs.js'
import type { LayerMount } from '../fuse/layer-fs.js'
import { unmountPath } from '../fuse/unmount.js'
import { ownLease, type LayerResolver } from '../layer/resolver.js'
import type { GzIndexFinder } from '../gzindex/artifact.js'
import { isGzipLayer } from '../registry/media-types.js'
import type { LayerLease } from '../layer/types.js'
import type { MultiRangeSource } from '../reader/types.js'
import { mountLayer } from '../fs/mount-layer.js'
import { TarLayer } from './full-fetch.js'
import { mountOverlay } from './overlay.js'
import { UndoStack } from './undo-stack.js'

export const TOC_DIGEST_ANNOTATION = 'containerd.io/snapshot/stargz/toc.digest'

export interface LayerDescriptor {
  digest: string
  size: number
  mediaType: string
  annotations?: Record<string, string>
}

/** What image-mount needs from a registry (RegistryClient fits). */
export interface ImageSource {
  resolveLayers(ref: string, signal?: AbortSignal): Promise<{ name: string; layers: LayerDescriptor[] }>
  blob(ref: string, desc: LayerDescriptor): Promise<RangeSource>
}

export interface ImageMountOptions {
  stateDir: string
  rw?: boolean
  allowFullFetch?: boolean
  logger?: Logger
  /** Resolves the eStargz layers (stays the caller's: close it after the ImageMount). */
  resolver: LayerResolver
  /** Where a layer's external TOC comes from, when its footer says the TOC is not in the blob. */
  externalToc?: (ref: string, desc: LayerDescriptor) => ExternalTocSource
  /** Each file's first access, with the index (0 = bottom) of the layer that served it. */
  onFirstAccess?: (layerIndex: number, entry: TocEntry) => void
  /** Plain gzip layers (no TOC digest): where their published gzip index is (src/gzindex). */
  gzIndex?: (ref: string) => GzIndexFinder
  fuse?: Omit<LayerMountOptions, 'logger' | 'closeLayer'>
  signal?: AbortSignal
}

export class ImageMount {
  private closing: Promise<void> | undefined
  private constructor(
    readonly mountpoint: string,
    readonly name: string,
    readonly layers: ReadonlyArray<{ digest: string; mount: LayerMount; full: boolean }>,
    private readonly undo: UndoStack,
    private readonly log: Logger,
  ) {}

  static async mount(source: ImageSource, ref: string, mountpoint: string, opts: ImageMountOptions): Promise<ImageMount> {
    const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'image-mount', ref, mountpoint })
    const undo = new UndoStack()
    try {
      const { name, layers } = await source.resolveLayers(ref, opts.signal)
      log.info({ name, layers: layers.length }, 'image-resolved')
      // 1. Resolve every layer first, so a non-eStargz layer is refused before anything is
      //    mounted. Resolved layers have not started fetching: that waits for their mount.
      const opened: Array<{ desc: LayerDescriptor; lease: LayerLease; full: boolean; handedOver: boolean }> = []
      for (const [i, desc] of layers.entries()) {
        let lease: LayerLease
        let full = false
        try {
          const tocDigest = desc.annotations?.[TOC_DIGEST_ANNOTATION]
          const externalToc = opts.externalToc?.(ref, desc)
          lease = await opts.resolver.resolve({
            digest: desc.digest,
            ...(tocDigest === undefined ? {} : { tocDigest }),
            ...(externalToc === undefined ? {} : { externalToc }),
            open: async () => (await source.blob(ref, desc)) as MultiRangeSource,
            ...(tocDigest === undefined && opts.gzIndex !== undefined && isGzipLayer(desc.mediaType) ? { gzIndex: { find: opts.gzIndex(ref) } } : {}),
          }, opts.signal)
        } catch (e) {
          if (!isNotEstargz(e)) throw e
          if (!opts.allowFullFetch) {
            throw new FailedPreconditionError(`layer ${i} (${desc.digest}, ${desc.mediaType}) of ${ref} is not eStargz (${errorMessage(e)}); pass --allow-full-fetch to fetch it whole`, { cause: e })
          }
          const dir = join(opts.stateDir, 'full', String(i))
          await mkdir(dir, { recursive: true })
          undo.push(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }))
          log.warn({ digest: desc.digest, index: i }, 'layer-full-fetch')
          const blob = await source.blob(ref, desc)
          try { lease = ownLease(await TarLayer.fetch(blob, desc.digest, dir, opts.signal)) } finally { await blob.close?.() }
          full = true
        }
        const o = { desc, lease, full, handedOver: false }
        // Until mountLayer owns it (it releases on its own failure, MountedLayer on close; a
        // layer whose unmount failed is kept, for the mount may still serve it).
        undo.push(`release layer ${desc.digest}`, () => o.handedOver ? Promise.resolve() : o.lease.release())
        opened.push(o)
      }
      // 2. One FUSE mount per layer; each starts fetching once mounted.
      const mounted: Array<{ digest: string; mount: LayerMount; full: boolean; dir: string }> = []
      for (const [i, o] of opened.entries()) {
        const dir = join(opts.stateDir, 'layers', String(i))
        await mkdir(dir, { recursive: true })
        // rmdir, never rm -r: if the unmount failed, this must not walk into the mount.
        undo.push(`remove ${dir}`, () => rmdir(dir))
        const hook = opts.onFirstAccess
        o.handedOver = true
        const m = await mountLayer(o.lease, dir, {
          ...opts.fuse,
          logger: log,
          ...(hook === undefined ? {} : { onFirstAccess: (e: TocEntry) => hook(i, e) }),
          ...(opts.signal === undefined ? {} : { signal: opts.signal }),
        })
        undo.push(`unmount ${dir}`, () => m.close())
        mounted.push({ digest: o.desc.digest, mount: m.mount, full: o.full, dir })
      }
      // 3. overlayfs, top layer first.
      let upper: { upperdir: string; workdir: string } | undefined
      if (opts.rw) {
        upper = { upperdir: join(opts.stateDir, 'upper'), workdir: join(opts.stateDir, 'work') }
        for (const d of [upper.upperdir, upper.workdir]) {
          await mkdir(d, { recursive: true })
          undo.push(`remove ${d}`, () => rm(d, { recursive: true, force: true }))
        }
      }
      const lowers = mounted.map((m) => m.dir).reverse()
      await mountOverlay(upper ? { lowerTopFirst: lowers, upper } : { lowerTopFirst: lowers }, mountpoint)
      undo.push(`unmount overlay ${mountpoint}`, () => unmountPath(mountpoint))
      log.info({ layers: mounted.map((m) => m.digest), rw: opts.rw ?? false }, 'mounted')
      return new ImageMount(mountpoint, name, mounted.map(({ digest, mount, full }) => ({ digest, mount, full })), undo, log)
    } catch (e) {
      const failures = await undo.run()
      for (const f of failures) log.error({ err: f.error, step: f.what }, 'undo-failed')
      throw e
    }
  }

  /** Unmount the overlay, then every layer; close the layers. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.undo.run().then((failures) => {
      for (const f of failures) this.log.error({ err: f.error, step: f.what }, 'undo-failed')
      this.log.info('unmounted')
      if (failures.length > 0) throw new Error(`unmounting ${this.mountpoint}: ${failures.map((f) => `${f.what}: ${errorMessage(f.error)}`).join('; ')}`)
    })
    return this.closing
  }
}
