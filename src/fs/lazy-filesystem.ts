/**
 * The FileSystem the daemon gives the snapshotter for remote snapshots: each layer is opened from
 * its registry (footer + TOC only, TOC verified against the layer's toc.digest label), mounted
 * read-only with FUSE at the snapshot's fs dir, and served lazily through the chunk cache.
 *
 * Owns: one LayerResolver (layers, blobs, the chunk cache, the decode pool), one priority gate
 * shared by every layer (so any on-demand read pauses all background fetching), and the mounts
 * it made. The RegistryClient stays its creator's (daemon/filesystem-factory.ts).
 */
import type { Logger } from 'pino'
import type { ChunkCache } from '../cache/types.js'
import { FailedPreconditionError, UnavailableError, errorMessage } from '../errors.js'
import { isMounted, unmountPath } from '../fuse/unmount.js'
import { LayerResolver, type ResolverStats } from '../layer/resolver.js'
import type { StargzLayer } from '../layer/layer.js'
import { fetchExternalToc } from '../estargz/external-toc-fetch.js'
import type { MetricsHooks } from '../metrics/hooks.js'
import type { RegistryClient } from '../registry/client.js'
import type { FileSystem, RemoteLayerInfo } from '../snapshot/filesystem.js'
import { PriorityGate } from '../task/priority-gate.js'
import { LIBRARY_DEFAULTS } from '../config/defaults.js'
import { mountLayer, type MountedLayer } from './mount-layer.js'

export interface LazyFileSystemOptions {
  client: RegistryClient
  /** Owned from here on (through the resolver): closed by close(). */
  cache: ChunkCache
  log: Logger
  metrics: MetricsHooks
  noPrefetch: boolean
  prefetchTimeoutSec: number
  noBackgroundFetch: boolean
  backgroundConcurrency: number
  backgroundUnitBytes: number
  /** Refuse layers whose TOC digest is unknown (no annotation) — default true. */
  requireTocDigest: boolean
  allowUnverified: boolean
  attrTimeoutSec: number
  /** FUSE entry (and negative-lookup) cache timeout ([fuse] entry_timeout). */
  entryTimeoutSec: number
  /** How long a successful health check is trusted ([blob] valid_interval; 0 = always check). */
  checkIntervalMs: number
  /** Keep a layer this long after its last unmount (default: the resolver's, 120 s). */
  layerTtlMs?: number
}

interface Mounted {
  mounted: MountedLayer<StargzLayer>
  info: RemoteLayerInfo
  checkedAt: number
}

export class LazyFileSystem implements FileSystem {
  private readonly mounts = new Map<string, Mounted>()
  private readonly gate: PriorityGate
  private readonly resolver: LayerResolver
  private closing: Promise<void> | undefined

  constructor(private readonly o: LazyFileSystemOptions) {
    // Background fetching yields to start-up: a mount counts as on-demand work, and background
    // work resumes only after LIBRARY_DEFAULTS.backgroundGraceMs without any, so the pull → create → start of a
    // container (gaps of a few hundred ms between the steps) is not slowed by it. Measured with
    // `stargz bench`: background fetch running during start-up cost python3 ~0.2 s (1.26 vs 1.06 s).
    this.gate = new PriorityGate({ backgroundConcurrency: o.backgroundConcurrency, graceMs: LIBRARY_DEFAULTS.backgroundGraceMs })
    const metrics = o.metrics
    this.resolver = new LayerResolver({
      cache: o.cache,
      gate: this.gate,
      logger: o.log,
      noPrefetch: o.noPrefetch,
      prefetchTimeoutSec: o.prefetchTimeoutSec,
      noBackgroundFetch: o.noBackgroundFetch,
      backgroundUnitBytes: o.backgroundUnitBytes,
      allowUnverified: o.allowUnverified,
      ...(o.layerTtlMs === undefined ? {} : { ttlMs: o.layerTtlMs }),
      hooksFor: (digest) => ({
        onFetch: (ev) => { if (ev.ok) { metrics.fetchedBytes(ev.length, digest); metrics.fetchLatency(ev.durationMs / 1000) } },
      }),
    })
  }

  /** What the resolver holds (tests: a failed mount leaves nothing behind). */
  resolverStats(): ResolverStats {
    return this.resolver.stats()
  }

  mount(mountpoint: string, info: RemoteLayerInfo, signal?: AbortSignal): Promise<void> {
    return this.gate.runPriority(() => this.mountNow(mountpoint, info, signal))
  }

  private async mountNow(mountpoint: string, info: RemoteLayerInfo, signal?: AbortSignal): Promise<void> {
    if (this.closing) throw new UnavailableError(`filesystem is shutting down; not mounting ${info.layerDigest} at ${mountpoint}`)
    if (this.mounts.has(mountpoint)) throw new FailedPreconditionError(`${mountpoint} is already a lazy mount`)
    if (info.tocDigest === undefined && this.o.requireTocDigest) {
      throw new FailedPreconditionError(`layer ${info.layerDigest} has no containerd.io/snapshot/stargz/toc.digest annotation; refusing an unverifiable TOC`)
    }
    const log = this.o.log.child({ digest: info.layerDigest, mountpoint })
    const started = performance.now()
    try {
      const lease = await this.resolver.resolve({
        digest: info.layerDigest,
        ...(info.tocDigest === undefined ? {} : { tocDigest: info.tocDigest }),
        open: () => this.o.client.blob(info.imageRef, info.layerDigest),
        // Asked for only when the footer says the TOC is external (the reference's -esgztoc image).
        externalToc: () => fetchExternalToc(this.o.client, info.imageRef, info.layerDigest, signal),
      }, signal)
      const metrics = this.o.metrics
      const mounted = await mountLayer(lease, mountpoint, {
        logger: log,
        attrTimeoutSec: this.o.attrTimeoutSec,
        entryTimeoutSec: this.o.entryTimeoutSec,
        onOp: (op, seconds) => metrics.fuseOp(op, seconds),
        ...(signal === undefined ? {} : { signal }),
      })
      if (this.closing) {
        await mounted.close()
        throw new UnavailableError(`filesystem is shutting down; mount of ${info.layerDigest} at ${mountpoint} undone`)
      }
      this.mounts.set(mountpoint, { mounted, info, checkedAt: Date.now() })
      // The gauge moves where the mount table changes, never around calls that may not mount.
      metrics.mountedLayers(1)
      log.info({ ms: Math.round(performance.now() - started), tocDigest: lease.layer.tocDigest }, 'lazy-layer-mounted')
    } catch (e) {
      // Leave the mountpoint empty and unmounted, as the snapshotter expects on failure
      // (mountLayer undid its own steps; this catches a mount left by an earlier process).
      if (await isMounted(mountpoint).catch(() => false)) await unmountPath(mountpoint, { lazyFallback: true }).catch(() => undefined)
      throw e
    }
  }

  async check(mountpoint: string): Promise<void> {
    const m = this.mounts.get(mountpoint)
    if (!m) throw new UnavailableError(`no lazy mount at ${mountpoint}`)
    // Checked recently: answer from memory. Mounts() is on every container start's path, and the
    // libuv pool that reading mountinfo needs may be busy writing the chunk cache.
    if (Date.now() - m.checkedAt < this.o.checkIntervalMs) return
    if (!(await isMounted(mountpoint))) throw new UnavailableError(`lazy mount at ${mountpoint} (layer ${m.info.layerDigest}) is gone`)
    // The registry must still answer for the blob, or later reads would fail inside containers.
    let exists: boolean
    try {
      exists = await this.o.client.blobExists(m.info.imageRef, m.info.layerDigest)
    } catch (e) {
      throw new UnavailableError(`layer ${m.info.layerDigest} of ${m.info.imageRef} is unreachable: ${(e as Error).message}`, { cause: e })
    }
    if (!exists) throw new UnavailableError(`layer ${m.info.layerDigest} is no longer in ${m.info.imageRef}'s repository`)
    m.checkedAt = Date.now()
  }

  async unmount(mountpoint: string): Promise<void> {
    const m = this.mounts.get(mountpoint)
    if (!m) {
      if (await isMounted(mountpoint).catch(() => false)) await unmountPath(mountpoint, { lazyFallback: true })
      return
    }
    await m.mounted.close()
    this.mounts.delete(mountpoint)
    this.o.metrics.mountedLayers(-1)
  }

  /**
   * Unmount everything this filesystem mounted, then release the layers, the decode pool and
   * the chunk cache (the resolver owns them). Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const mp of [...this.mounts.keys()]) {
        await this.unmount(mp).catch((e: unknown) => this.o.log.warn({ mountpoint: mp, err: errorMessage(e) }, 'unmount failed at shutdown'))
      }
      await this.resolver.close()
      this.gate.close()
    })()
    return this.closing
  }
}
