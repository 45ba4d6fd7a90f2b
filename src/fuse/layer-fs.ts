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
import { LIBRARY_DEFAULTS } from '../config/defaults.js'
import { createLayerOps, type LayerOpsOptions, type LayerOpsStats } from './layer-ops.js'
import { buildMountOptions, type FuseTuning } from './mount-options.js'
import { nativeMount, type NativeMount } from './native.js'
import { setReadAhead } from './read-ahead.js'
import { isMounted, unmountPath, type UnmountResult } from './unmount.js'

/**
 * Who serves the FUSE connection: fuse-native (libfuse2) when none is given, or our own
 * protocol code (src/fuseproto), which can survive the serving process (README "Crash, restart
 * and upgrade"). $STARGZ_FUSE_BACKEND=proto picks the latter without a holder (tests, benches).
 */
export interface MountBackendRequest {
  mountpoint: string
  layer: Layer
  table: LayerTree
  log: Logger
  fsName: string
  attrTimeoutSec: number
  entryTimeoutSec: number
  opaqueXattrs?: ReadonlyArray<'trusted' | 'user'>
  onOp?: (op: string, seconds: number) => void
}
export interface MountBackendResult {
  mount: { readonly mountpoint: string; unmount(): Promise<UnmountResult> }
  stats: LayerOpsStats
}
export interface MountBackend {
  readonly kind: string
  mount(req: MountBackendRequest): Promise<MountBackendResult>
  /**
   * Is there a connection at `mountpoint` waiting to be adopted? Then a failed mount attempt must
   * leave the kernel mount alone (its reads wait for the next attempt) instead of unmounting it.
   */
  adopting?(mountpoint: string): boolean
}

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
  /** Serve through this backend instead of fuse-native (see MountBackend). */
  backend?: MountBackend
}

let protoDefault: Promise<MountBackend> | undefined
function defaultProtoBackend(): Promise<MountBackend> {
  protoDefault ??= import('../fuseproto/backend.js').then((m) => new m.ProtoBackend({ log: pino({ level: 'silent' }) }))
  return protoDefault
}

export class LayerMount {
  private closing: Promise<UnmountResult> | undefined
  private constructor(
    readonly mountpoint: string,
    readonly layer: Layer,
    readonly table: LayerTree,
    private readonly native: Pick<NativeMount, 'unmount'>,
    private readonly opStats: LayerOpsStats,
    private readonly log: Logger,
    private readonly closeLayer: boolean,
  ) {}

  static async mount(layer: Layer, mountpoint: string, opts: LayerMountOptions = {}): Promise<LayerMount> {
    const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'fuse', digest: layer.digest, mountpoint })
    const kind = opts.tree ?? (process.env.STARGZ_INDEX === 'compact' ? 'compact' : 'object')
    const table = opts.table ?? (kind === 'compact' ? CompactIndex.build(layer.index) : InodeTable.build(layer.index))
    const fsName = `stargz:${layer.digest.replace(/^sha256:/, '').slice(0, 12)}`
    const backend = opts.backend ?? (process.env.STARGZ_FUSE_BACKEND === 'proto' ? await defaultProtoBackend() : undefined)
    let native: Pick<NativeMount, 'unmount' | 'mountpoint'>
    let stats: LayerOpsStats
    let options: string[] = []
    if (backend !== undefined) {
      const r = await backend.mount({
        mountpoint, layer, table, log, fsName,
        attrTimeoutSec: opts.attrTimeoutSec ?? LIBRARY_DEFAULTS.fuse.attrTimeoutSec,
        entryTimeoutSec: opts.entryTimeoutSec ?? LIBRARY_DEFAULTS.fuse.entryTimeoutSec,
        ...(opts.opaqueXattrs ? { opaqueXattrs: opts.opaqueXattrs } : {}), ...(opts.onOp ? { onOp: opts.onOp } : {}),
      })
      native = r.mount
      stats = r.stats
    } else {
      // $STARGZ_SERVE_XATTRS=1 keeps the previous behaviour (every getxattr answered in JS) for one
      // release, so bench:metadata can measure both in one run.
      const lo = createLayerOps(layer, table, log, { ...opts, serveXattrs: opts.serveXattrs ?? process.env.STARGZ_SERVE_XATTRS === '1' })
      stats = lo.stats
      options = buildMountOptions({ fsName, ...opts })
      try {
        native = await nativeMount(mountpoint, lo.ops, {
          options,
          timeout: { default: opts.opTimeoutMs ?? 60_000, read: opts.readTimeoutMs ?? 10 * 60_000 },
        })
      } catch (e) {
        // A half-made mount (kernel mount done, libfuse set-up failed) must not be left behind.
        if (await isMounted(mountpoint).catch(() => false)) await unmountPath(mountpoint).catch(() => undefined)
        throw e
      }
    }
    const m = new LayerMount(native.mountpoint, layer, table, native, stats, log, opts.closeLayer ?? false)
    const ra = opts.readAheadKib ?? 1024
    if (ra > 0) {
      const r = await setReadAhead(native.mountpoint, ra)
      log.debug({ readAheadKib: ra, ...r }, 'read-ahead')
    }
    log.info({ entries: table.count, backend: backend?.kind ?? 'fuse-native', options: options.join(',') }, 'layer-mounted')
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
