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
import { LayerResolver, type ResolvedLayer, type ResolverStats } from '../layer/resolver.js'
import type { LayerStore } from '../layer/layer-store.js'
import { fetchExternalToc } from '../estargz/external-toc-fetch.js'
import type { MetricsHooks } from '../metrics/hooks.js'
import type { RegistryClient } from '../registry/client.js'
import type { RegistryBlob } from '../registry/blob.js'
import type { FileSystem, RemoteLayerInfo } from '../snapshot/filesystem.js'
import { PriorityGate } from '../task/priority-gate.js'
import { LIBRARY_DEFAULTS } from '../config/defaults.js'
import { mountLayer, type MountedLayer } from './mount-layer.js'
import { indexFinder } from '../gzindex/artifact.js'
import { GzIndexLayer } from '../gzindex/layer.js'

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
  /** Persisted layer records for restore without the registry (owned: closed by close()). */
  layerStore?: LayerStore
}

interface Mounted {
  mounted: MountedLayer<ResolvedLayer>
  info: RemoteLayerInfo
  checkedAt: number
}

/**
 * A lazy layer is opened with one suffix-range GET of this many bytes (src/registry/blob.ts):
 * size, footer and — for layers up to tens of thousands of files — the whole compressed TOC in
 * one round trip. At 200 Mbit/s 256 KiB takes ~10 ms, half a 20 ms round trip; a bigger TOC
 * costs one more read of just the missing part.
 */
export const TOC_TAIL_BYTES = 256 * 1024
/** A blob opened ahead of its own Prepare (resolveAhead) is dropped if nobody asks for it in this long. */
const RESOLVED_AHEAD_TTL_MS = 60_000

export class LazyFileSystem implements FileSystem {
  private readonly mounts = new Map<string, Mounted>()
  /** Blobs opened ahead for the image's other layers, by image ref + digest. */
  private readonly ahead = new Map<string, { blob: Promise<RegistryBlob>; timer: NodeJS.Timeout }>()
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
      ...(o.layerStore === undefined ? {} : { store: o.layerStore }),
      hooksFor: (digest) => ({
        onFetch: (ev) => { if (ev.ok) { metrics.fetchedBytes(ev.length, digest, ev.mode); metrics.fetchLatency(ev.durationMs / 1000, digest) } },
        // Tier counts come from the cache itself (src/cache/chunk-cache.ts); this is per layer.
        onCacheHit: (ev) => metrics.layerCacheHit(digest, ev.bytes),
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
    const log = this.o.log.child({ digest: info.layerDigest, mountpoint })
    const started = performance.now()
    try {
      const lease = await this.resolver.resolve({
        digest: info.layerDigest,
        ...(info.tocDigest === undefined ? {} : { tocDigest: info.tocDigest }),
        // The image's other layers are opened ahead only when this one needs the registry: not
        // when it opens from its persisted record (a restart, maybe with the registry down).
        open: (sig) => { this.resolveAhead(info); return this.openBlob(info.imageRef, info.layerDigest, sig) },
        // From a persisted record (a restart): no request until a chunk is missing from the cache.
        openKnown: (size) => this.o.client.blob(info.imageRef, info.layerDigest, size),
        // Asked for only when the footer says the TOC is external (the reference's -esgztoc image).
        externalToc: () => fetchExternalToc(this.o.client, info.imageRef, info.layerDigest, signal),
        // No TOC digest: a plain gzip layer served through its published gzip index, if any
        // (src/gzindex); with requireTocDigest nothing else is mounted (the snapshotter pulls).
        ...(info.tocDigest === undefined ? { gzIndex: { find: indexFinder(this.o.client, info.imageRef), only: this.o.requireTocDigest } } : {}),
      }, signal)
      const metrics = this.o.metrics
      const mounted = await mountLayer(lease, mountpoint, {
        logger: log,
        attrTimeoutSec: this.o.attrTimeoutSec,
        entryTimeoutSec: this.o.entryTimeoutSec,
        onOp: (op, seconds) => metrics.fuseOp(op, seconds, info.layerDigest),
        ...(signal === undefined ? {} : { signal }),
      })
      if (this.closing) {
        await mounted.close()
        throw new UnavailableError(`filesystem is shutting down; mount of ${info.layerDigest} at ${mountpoint} undone`)
      }
      this.mounts.set(mountpoint, { mounted, info, checkedAt: Date.now() })
      // The gauge moves where the mount table changes, never around calls that may not mount.
      metrics.mountedLayers(1)
      const layer = lease.layer
      metrics.layerOperation('mount', info.layerDigest, performance.now() - started)
      metrics.layerMounted(mountpoint, info.layerDigest, () => {
        const st = layer.state()
        const pf = layer.stats().prefetch
        return { size: st.size, fetchedSize: st.fetchedSize, prefetchSize: pf?.status === 'done' ? pf.bytes : 0, bytesServed: mounted.mount.stats().bytesRead }
      })
      void layer.prefetchDone.then((r) => { if (r.status === 'done') metrics.layerOperation('all_prefetches_completed', info.layerDigest, performance.now() - started) })
      log.info({ ms: Math.round(performance.now() - started), tocDigest: layer.tocDigest, ...(layer instanceof GzIndexLayer ? { gzindex: true } : {}) }, layer instanceof GzIndexLayer ? 'lazy-layer-mounted-gzindex' : 'lazy-layer-mounted')
    } catch (e) {
      // Leave the mountpoint empty and unmounted, as the snapshotter expects on failure
      // (mountLayer undid its own steps; this catches a mount left by an earlier process).
      if (await isMounted(mountpoint).catch(() => false)) await unmountPath(mountpoint, { lazyFallback: true }).catch(() => undefined)
      throw e
    }
  }

  /**
   * On an image's first remote Prepare, open every other layer it names (stargz.layers or CRI's
   * image-layers label) at once, as the reference does: containerd prepares the layers one after
   * another, and each then finds its footer and TOC already in memory instead of waiting a round
   * trip of its own. Only the fetch happens ahead; the TOC is verified when its layer mounts.
   */
  private resolveAhead(info: RemoteLayerInfo): void {
    if (this.closing) return
    const mounted = new Set([...this.mounts.values()].map((m) => `${m.info.imageRef}@${m.info.layerDigest}`))
    for (const digest of info.imageLayers ?? []) {
      const key = `${info.imageRef}@${digest}`
      if (digest === info.layerDigest || this.ahead.has(key) || mounted.has(key)) continue
      const blob = this.o.client.blobWithTail(info.imageRef, digest, TOC_TAIL_BYTES)
      blob.catch(() => undefined)
      const timer = setTimeout(() => {
        if (this.ahead.get(key)?.blob !== blob) return
        this.ahead.delete(key)
        blob.then((b) => b.close(), () => undefined).catch(() => undefined)
      }, RESOLVED_AHEAD_TTL_MS)
      timer.unref()
      this.ahead.set(key, { blob, timer })
    }
  }

  /** The blob for a layer: the one opened ahead if there is one (handed over: the resolver owns it now). */
  private openBlob(imageRef: string, digest: string, signal?: AbortSignal): Promise<RegistryBlob> {
    const key = `${imageRef}@${digest}`
    const pre = this.ahead.get(key)
    if (!pre) return this.o.client.blobWithTail(imageRef, digest, TOC_TAIL_BYTES, signal)
    this.ahead.delete(key)
    clearTimeout(pre.timer)
    // A failed look-ahead is retried here, so its error is the one this layer's Prepare reports.
    return pre.blob.catch(() => this.o.client.blobWithTail(imageRef, digest, TOC_TAIL_BYTES, signal))
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
    this.o.metrics.layerUnmounted(mountpoint)
    this.o.metrics.mountedLayers(-1)
  }

  /**
   * Unmount everything this filesystem mounted, then release the layers, the decode pool and
   * the chunk cache (the resolver owns them). Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const { blob, timer } of this.ahead.values()) {
        clearTimeout(timer)
        blob.then((b) => b.close(), () => undefined).catch(() => undefined)
      }
      this.ahead.clear()
      for (const mp of [...this.mounts.keys()]) {
        await this.unmount(mp).catch((e: unknown) => this.o.log.warn({ mountpoint: mp, err: errorMessage(e) }, 'unmount failed at shutdown'))
      }
      await this.resolver.close()
      this.gate.close()
    })()
    return this.closing
  }
}
