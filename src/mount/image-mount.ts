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
import { FailedPreconditionError, errorMessage } from '../errors.js'
import type { RangeSource } from '../estargz/types.js'
import { LayerMount, type LayerMountOptions } from '../fuse/layer-fs.js'
import { unmountPath } from '../fuse/unmount.js'
import type { Layer } from '../layer/types.js'
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

/** Opens an eStargz layer over its blob; rejects with ERR_FOOTER_INVALID when it is not one. */
export type LayerOpener = (source: RangeSource, desc: LayerDescriptor, ref: string) => Promise<Layer>

export interface ImageMountOptions {
  stateDir: string
  rw?: boolean
  allowFullFetch?: boolean
  logger?: Logger
  openLayer: LayerOpener
  fuse?: Omit<LayerMountOptions, 'logger' | 'closeLayer'>
  signal?: AbortSignal
}

function isNotEstargz(e: unknown): boolean {
  return (e as { code?: unknown })?.code === 'ERR_FOOTER_INVALID'
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
      // 1. Open every layer first, so a non-eStargz layer is refused before anything is mounted.
      const opened: Array<{ desc: LayerDescriptor; layer: Layer; full: boolean }> = []
      for (const [i, desc] of layers.entries()) {
        const blob = await source.blob(ref, desc)
        let layer: Layer
        let full = false
        try {
          layer = await opts.openLayer(blob, desc, ref)
        } catch (e) {
          if (!isNotEstargz(e)) { await blob.close?.(); throw e }
          if (!opts.allowFullFetch) {
            await blob.close?.()
            throw new FailedPreconditionError(`layer ${i} (${desc.digest}, ${desc.mediaType}) of ${ref} is not eStargz (${errorMessage(e)}); pass --allow-full-fetch to fetch it whole`, { cause: e })
          }
          const dir = join(opts.stateDir, 'full', String(i))
          await mkdir(dir, { recursive: true })
          undo.push(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }))
          log.warn({ digest: desc.digest, index: i }, 'layer-full-fetch')
          try { layer = await TarLayer.fetch(blob, desc.digest, dir, opts.signal) } finally { await blob.close?.() }
          full = true
        }
        const l = layer
        undo.push(`close layer ${desc.digest}`, () => l.close())
        opened.push({ desc, layer, full })
      }
      // 2. One FUSE mount per layer.
      const mounted: Array<{ digest: string; mount: LayerMount; full: boolean; dir: string }> = []
      for (const [i, o] of opened.entries()) {
        const dir = join(opts.stateDir, 'layers', String(i))
        await mkdir(dir, { recursive: true })
        // rmdir, never rm -r: if the unmount failed, this must not walk into the mount.
        undo.push(`remove ${dir}`, () => rmdir(dir))
        const m = await LayerMount.mount(o.layer, dir, { ...opts.fuse, logger: log })
        undo.push(`unmount ${dir}`, () => m.close())
        mounted.push({ digest: o.desc.digest, mount: m, full: o.full, dir })
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
