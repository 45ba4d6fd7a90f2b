/**
 * THE one way a layer gets a FUSE mount (daemon, `stargz mount`, optimize, benchmarks):
 *
 *   lease (from LayerResolver.resolve, not started) → FUSE mount → start prefetch/background
 *
 * Ownership of the lease passes to mountLayer: when a step fails, what was done is undone (the
 * mount unmounted, the lease released with evict) before the error is thrown, so a failed mount
 * leaves no mount, no fetch, no open blob. The layer starts fetching only once it is mounted,
 * as its last step, so nothing can fail after it started.
 */
import type { TocEntry } from '../estargz/types.js'
import { LayerMount, type LayerMountOptions } from '../fuse/layer-fs.js'
import type { Layer, LayerLease } from '../layer/types.js'

export interface MountLayerOptions extends Omit<LayerMountOptions, 'closeLayer'> {
  /** Aborts the mount; an abort after the kernel mount was made unmounts it again. */
  signal?: AbortSignal
  /** Told of each file's first access through this mount's layer (stargz optimize). */
  onFirstAccess?: (entry: TocEntry) => void
}

export class MountedLayer<L extends Layer = Layer> {
  private closing: Promise<void> | undefined

  constructor(readonly mount: LayerMount, private readonly lease: LayerLease<L>, private readonly unsubscribe: () => void) {}

  get mountpoint(): string { return this.mount.mountpoint }
  get layer(): L { return this.lease.layer }

  /**
   * Unmount, then release the layer. Safe to call twice; when the unmount fails the layer is
   * kept (the mount may still serve it) and close() may be retried.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.mount.close()
      this.unsubscribe()
      await this.lease.release()
    })()
    this.closing.catch(() => { this.closing = undefined })
    return this.closing
  }
}

export async function mountLayer<L extends Layer>(lease: LayerLease<L>, mountpoint: string, opts: MountLayerOptions = {}): Promise<MountedLayer<L>> {
  const { signal, onFirstAccess, ...fuse } = opts
  const layer = lease.layer
  let unsubscribe = (): void => undefined
  let mount: LayerMount | undefined
  try {
    signal?.throwIfAborted()
    if (onFirstAccess !== undefined && layer.onFirstAccess !== undefined) unsubscribe = layer.onFirstAccess(onFirstAccess)
    // LayerMount.mount itself undoes a half-made kernel mount when libfuse set-up fails.
    mount = await LayerMount.mount(layer, mountpoint, { ...fuse, closeLayer: false })
    signal?.throwIfAborted()
  } catch (e) {
    unsubscribe()
    if (mount !== undefined) await mount.close().catch(() => undefined)
    await lease.release({ evict: true })
    throw e
  }
  layer.start?.()
  return new MountedLayer(mount, lease, unsubscribe)
}
