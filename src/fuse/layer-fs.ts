/**
 * Serve one eStargz layer read-only at a mountpoint with fuse-native.
 *
 *   const m = await LayerMount.mount(layer, '/var/lib/stargzd/layers/sha256-…', { logger })
 *   …
 *   await m.close()   // unmounts (clean, else lazy); safe to call twice
 */
import { pino, type Logger } from 'pino'
import type { Layer } from '../layer/types.js'
import { CompactIndex } from '../index/compact-index.js'
import { InodeTable, type LayerTree } from './inode-table.js'
import { createLayerOps, type LayerOpsOptions, type LayerOpsStats } from './layer-ops.js'
import { buildMountOptions, type FuseTuning } from './mount-options.js'
import { nativeMount, type NativeMount } from './native.js'
import { setReadAhead } from './read-ahead.js'
import { isMounted, unmountPath, type UnmountResult } from './unmount.js'

export interface LayerMountOptions extends FuseTuning, LayerOpsOptions {
  logger?: Logger
  /** Kernel read-ahead for the mount in KiB; 0 leaves the default (default 1024). */
  readAheadKib?: number
  /** Close the layer when the mount is closed (default false: the caller owns it). */
  closeLayer?: boolean
  /** Per-op timeout in ms before fuse-native answers ETIMEDOUT (reads: readTimeoutMs). */
  opTimeoutMs?: number
  readTimeoutMs?: number
  /** A prebuilt tree (e.g. shared with a bench, or re-opened from an index file); built from layer.index otherwise. */
  table?: LayerTree
  /**
   * Which tree to build when none is given: 'object' (InodeTable over the TOC objects) or
   * 'compact' (src/index, one buffer). Default: $STARGZ_INDEX, else 'object' — while the reader
   * still holds the TocIndex objects, the compact tree is an extra copy, not a saving.
   */
  tree?: 'object' | 'compact'
}

export class LayerMount {
  private closing: Promise<UnmountResult> | undefined
  private constructor(
    readonly mountpoint: string,
    readonly layer: Layer,
    readonly table: LayerTree,
    private readonly native: NativeMount,
    private readonly opStats: LayerOpsStats,
    private readonly log: Logger,
    private readonly closeLayer: boolean,
  ) {}

  static async mount(layer: Layer, mountpoint: string, opts: LayerMountOptions = {}): Promise<LayerMount> {
    const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'fuse', digest: layer.digest, mountpoint })
    const kind = opts.tree ?? (process.env.STARGZ_INDEX === 'compact' ? 'compact' : 'object')
    const table = opts.table ?? (kind === 'compact' ? CompactIndex.build(layer.index) : InodeTable.build(layer.index))
    // $STARGZ_SERVE_XATTRS=1 keeps the previous behaviour (every getxattr answered in JS) for one
    // release, so bench:metadata can measure both in one run.
    const { ops, stats } = createLayerOps(layer, table, log, { ...opts, serveXattrs: opts.serveXattrs ?? process.env.STARGZ_SERVE_XATTRS === '1' })
    const options = buildMountOptions({ fsName: `stargz:${layer.digest.replace(/^sha256:/, '').slice(0, 12)}`, ...opts })
    let native: NativeMount
    try {
      native = await nativeMount(mountpoint, ops, {
        options,
        timeout: { default: opts.opTimeoutMs ?? 60_000, read: opts.readTimeoutMs ?? 10 * 60_000 },
      })
    } catch (e) {
      // A half-made mount (kernel mount done, libfuse set-up failed) must not be left behind.
      if (await isMounted(mountpoint).catch(() => false)) await unmountPath(mountpoint).catch(() => undefined)
      throw e
    }
    const m = new LayerMount(native.mountpoint, layer, table, native, stats, log, opts.closeLayer ?? false)
    const ra = opts.readAheadKib ?? 1024
    if (ra > 0) {
      const r = await setReadAhead(native.mountpoint, ra)
      log.debug({ readAheadKib: ra, ...r }, 'read-ahead')
    }
    log.info({ entries: table.count, options: options.join(',') }, 'layer-mounted')
    return m
  }

  stats(): Readonly<LayerOpsStats> { return { ...this.opStats } }

  get closed(): boolean { return this.closing !== undefined }

  /** Unmount (clean, falling back to lazy when busy). Safe to call twice; retried if it failed. */
  async close(): Promise<UnmountResult> {
    this.closing ??= (async () => {
      const how = await this.native.unmount()
      this.log.info({ how }, 'layer-unmounted')
      if (this.closeLayer) await this.layer.close()
      return how
    })()
    try {
      return await this.closing
    } catch (e) {
      this.closing = undefined
      throw e
    }
  }
}
