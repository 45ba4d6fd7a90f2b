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
import { TocIndex } from '../estargz/toc-index.js'
import { InvalidArgumentError } from '../errors.js'
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
   * Which tree to build when none is given and the layer has none of its own (a layer over a
   * CompactIndex serves it as is): 'object' (InodeTable over the TocIndex objects) or 'compact'
   * (a CompactIndex packed from them). Default: 'object' — packing would be an extra copy.
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
    const table = opts.table ?? layer.tree ?? LayerMount.buildTree(layer, opts.tree ?? 'object')
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

  private static buildTree(layer: Layer, kind: 'object' | 'compact'): LayerTree {
    const index = layer.index
    if (!(index instanceof TocIndex)) throw new InvalidArgumentError(`layer ${layer.digest} has neither a tree of its own nor a TocIndex to build one from`)
    return kind === 'compact' ? CompactIndex.build(index) : InodeTable.build(index)
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
