/**
 * The FileSystem the daemon gives the snapshotter for remote snapshots: each layer is opened from
 * its registry (footer + TOC only, TOC verified against the layer's toc.digest label), mounted
 * read-only with FUSE at the snapshot's fs dir, and served lazily through the chunk cache.
 *
 * Owns: one LayerResolver (layers, blobs, the chunk cache), the decode pool (started at once), one priority gate
 * shared by every layer (so any on-demand read pauses all background fetching), and the mounts
 * it made. The RegistryClient stays its creator's (daemon/filesystem-factory.ts).
 */
import type { Logger } from 'pino'
import type { ChunkCache } from '../cache/types.js'
import { FailedPreconditionError, TocDigestError, UnavailableError, errorMessage } from '../errors.js'
import { loadFuseNative } from '../fuse/native.js'
import { isMounted, unmountPath } from '../fuse/unmount.js'
import { LayerResolver, type LayerSpec, type ResolvedLayer, type ResolverStats } from '../layer/resolver.js'
import type { LayerLease } from '../layer/types.js'
import type { LayerStore } from '../layer/layer-store.js'
import { fetchExternalToc } from '../estargz/external-toc-fetch.js'
import type { MetricsHooks } from '../metrics/hooks.js'
import type { RegistryClient } from '../registry/client.js'
import type { FileSystem, RemoteLayerInfo } from '../snapshot/filesystem.js'
import { PriorityGate } from '../task/priority-gate.js'
import { WorkerChunkDecoder } from '../reader/worker-decoder.js'
import { TocBuildPool } from '../index/toc-build-pool.js'
import { LIBRARY_DEFAULTS } from '../config/defaults.js'
import { mountLayer, type MountedLayer } from './mount-layer.js'
import { IndexStore } from '../index/index-store.js'
import { defaultMetadataBudget } from '../estargz/metadata-budget.js'
import type { MountBackend } from '../fuse/layer-fs.js'
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
  /** Persisted layer indexes by TOC digest (src/index/index-store.ts), e.g. <root>/index. */
  indexDir?: string
  /** Per-layer bound on a layer index's bytes ([metadata_layer_budget_mb]). */
  maxIndexBytes?: number
  /** Serve mounts through this backend instead of fuse-native (stargz-fused: src/fuseproto). */
  mountBackend?: MountBackend
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
 * size, footer and — for layers up to ~10k files — the whole compressed TOC in one round trip.
 * 512 KiB: python3's 8,235-entry layer has a 408 KB TOC, which 256 KiB missed by one round trip
 * (~30 ms with its transfer, measured in `stargz bench`); at 200 Mbit/s the extra 256 KiB of a
 * small layer's tail takes ~11 ms. A bigger TOC costs one more read of only the bytes before
 * the tail (RegistryBlob.read).
 */
export const TOC_TAIL_BYTES = 512 * 1024
/** A layer resolved ahead of its own Prepare (resolveAhead) is released if nobody asks for it in this long. */
const RESOLVED_AHEAD_TTL_MS = 60_000

export class LazyFileSystem implements FileSystem {
  private readonly mounts = new Map<string, Mounted>()
  /** Layers resolved ahead (TOC loaded, not verified yet) for an image's other layers, by digest. */
  private readonly ahead = new Map<string, { lease: Promise<LayerLease<ResolvedLayer> | undefined>; timer: NodeJS.Timeout }>()
  private readonly gate: PriorityGate
  private readonly decoder: WorkerChunkDecoder
  /** Builds layers' compact indexes off the main thread; owned, closed by close(). */
  private readonly tocBuilder: TocBuildPool
  private readonly resolver: LayerResolver
  /** Persisted compact indexes by TOC digest, shared by every layer of that digest (src/index/index-store.ts). */
  private readonly indexStore: IndexStore | undefined
  private closing: Promise<void> | undefined

  constructor(private readonly o: LazyFileSystemOptions) {
    // Background fetching yields to start-up: a mount counts as on-demand work, and background
    // work resumes only after LIBRARY_DEFAULTS.backgroundGraceMs without any, so the pull → create → start of a
    // container (gaps of a few hundred ms between the steps) is not slowed by it. Measured with
    // `stargz bench`: background fetch running during start-up cost python3 ~0.2 s (1.26 vs 1.06 s).
    this.gate = new PriorityGate({ backgroundConcurrency: o.backgroundConcurrency, graceMs: LIBRARY_DEFAULTS.backgroundGraceMs })
    // The decode pool starts with the filesystem, not at the first chunk a container waits for.
    this.decoder = new WorkerChunkDecoder()
    this.decoder.warm()
    // The same for the TOC build pool: the first layer's index is built by a warm worker.
    this.tocBuilder = new TocBuildPool()
    this.tocBuilder.warm()
    // Load the FUSE addon now rather than inside the first Prepare (12 ms there, profiled). A
    // failure is left for mount() to report, with its own context.
    try { loadFuseNative() } catch { /* reported by the first mount */ }
    const metrics = o.metrics
    if (o.indexDir !== undefined) this.indexStore = new IndexStore(o.indexDir, { budget: defaultMetadataBudget, onProblem: (what, err) => o.log.warn({ err: errorMessage(err) }, what), ...(o.maxIndexBytes === undefined ? {} : { maxBytes: o.maxIndexBytes }) })
    this.resolver = new LayerResolver({
      cache: o.cache,
      gate: this.gate,
      decoder: this.decoder,
      tocBuilder: this.tocBuilder,
      logger: o.log,
      noPrefetch: o.noPrefetch,
      prefetchTimeoutSec: o.prefetchTimeoutSec,
      noBackgroundFetch: o.noBackgroundFetch,
      backgroundUnitBytes: o.backgroundUnitBytes,
      allowUnverified: o.allowUnverified,
      ...(o.layerTtlMs === undefined ? {} : { ttlMs: o.layerTtlMs }),
      ...(this.indexStore === undefined ? {} : { indexStore: this.indexStore }),
      ...(o.maxIndexBytes === undefined ? {} : { maxIndexBytes: o.maxIndexBytes }),
      ...(o.layerStore === undefined ? {} : { store: o.layerStore }),
      hooksFor: (digest) => ({
        onFetch: (ev) => { if (ev.ok) { metrics.fetchedBytes(ev.length, digest, ev.mode); metrics.fetchLatency(ev.durationMs / 1000, digest) } },
        // Tier counts come from the cache itself (src/cache/chunk-cache.ts); this is per layer.
        onCacheHit: (ev) => metrics.layerCacheHit(digest, ev.bytes),
      }),
    })
  }

  /** Whether a layer of this TOC digest can be served again from local state (record or persisted index). */
  private async hasLocalState(tocDigest: string): Promise<boolean> {
    if (await this.o.layerStore?.has(tocDigest) ?? false) return true
    return (await this.indexStore?.knownSize(tocDigest).catch(() => undefined)) !== undefined
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
    // A layer with a persisted record is being restored (or pulled again): it needs no registry,
    // and neither do its neighbours, so no look-ahead (which would ask the registry — maybe down
    // or hung — for every other layer and make this mount wait for it).
    if (info.tocDigest === undefined || !(await this.hasLocalState(info.tocDigest))) this.resolveAhead(info)
    try {
      // A resolution started ahead is joined once it settled (a failed one is retried below, so
      // its error is the one this Prepare reports); its lease is dropped once ours is held.
      const pre = this.ahead.get(info.layerDigest)
      if (pre) await pre.lease
      const lease = await this.resolver.resolve(this.layerSpec(info.imageRef, info.layerDigest, info.tocDigest, { signal, gzIndex: true }), signal)
      this.dropAhead(info.layerDigest)
      // The TOC digest is checked here, not only while loading: a layer resolved ahead was loaded
      // before its own Prepare brought the annotation (as the reference's Verify after resolve).
      if (info.tocDigest !== undefined && lease.layer.tocDigest !== info.tocDigest) {
        await lease.release({ evict: true })
        throw new TocDigestError(info.tocDigest, lease.layer.tocDigest)
      }
      // Without a TOC digest only a gzip index may be mounted under requireTocDigest: an eStargz
      // layer resolved ahead (unverified) is not served for a Prepare that cannot verify it.
      if (info.tocDigest === undefined && this.o.requireTocDigest && !(lease.layer instanceof GzIndexLayer)) {
        await lease.release({ evict: true })
        throw new FailedPreconditionError(`layer ${info.layerDigest} has no containerd.io/snapshot/stargz/toc.digest annotation; refusing an unverifiable TOC`)
      }
      const metrics = this.o.metrics
      const mounted = await mountLayer(lease, mountpoint, {
        logger: log,
        attrTimeoutSec: this.o.attrTimeoutSec,
        entryTimeoutSec: this.o.entryTimeoutSec,
        onOp: (op, seconds) => metrics.fuseOp(op, seconds, info.layerDigest),
        ...(this.o.mountBackend === undefined ? {} : { backend: this.o.mountBackend }),
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
      // A connection waiting to be adopted (stargz-fused restarted) stays: its reads wait for a retry.
      const held = this.o.mountBackend?.adopting?.(mountpoint) ?? false
      if (!held && await isMounted(mountpoint).catch(() => false)) await unmountPath(mountpoint, { lazyFallback: true }).catch(() => undefined)
      throw e
    }
  }

  /**
   * On an image's first remote Prepare, resolve every other layer it names (stargz.layers or
   * CRI's image-layers label) at once, as the reference does: containerd prepares the layers one
   * after another, and each then finds its layer resolved (footer, TOC parsed, index built)
   * instead of waiting for its own fetch and parse; its Prepare is left with the FUSE mount.
   * The labels name no TOC digests, so these TOCs are loaded unverified and checked against
   * each layer's toc.digest when its own Prepare arrives (mountNow), before anything is served.
   */
  private resolveAhead(info: RemoteLayerInfo): void {
    if (this.closing) return
    const mounted = new Set([...this.mounts.values()].map((m) => m.info.layerDigest))
    for (const digest of info.imageLayers ?? []) {
      if (digest === info.layerDigest || this.ahead.has(digest) || mounted.has(digest)) continue
      // A look-ahead that fails is forgotten (undefined): the layer's own Prepare tries again.
      const lease = this.resolver.resolve(this.layerSpec(info.imageRef, digest, undefined)).catch((e: unknown) => {
        this.o.log.debug({ digest, err: errorMessage(e) }, 'resolve-ahead-failed')
        return undefined
      })
      const timer = setTimeout(() => this.dropAhead(digest), RESOLVED_AHEAD_TTL_MS)
      timer.unref()
      this.ahead.set(digest, { lease, timer })
    }
  }

  /** Release a look-ahead's lease (the resolver keeps the layer while another lease holds it, or for its TTL). */
  private dropAhead(digest: string): void {
    const pre = this.ahead.get(digest)
    if (!pre) return
    this.ahead.delete(digest)
    clearTimeout(pre.timer)
    void pre.lease.then((l) => l?.release()).catch(() => undefined)
  }

  /**
   * `gzIndex`: a layer's own Prepare without a TOC digest may be a plain gzip layer served
   * through its published gzip index (src/gzindex; with requireTocDigest nothing else is mounted).
   * Look-aheads try eStargz only: they do not know yet whether their Prepare brings a digest.
   */
  private layerSpec(imageRef: string, digest: string, tocDigest: string | undefined, o: { signal?: AbortSignal; gzIndex?: boolean } = {}): LayerSpec {
    return {
      digest,
      ...(tocDigest === undefined ? {} : { tocDigest }),
      open: (sig) => this.o.client.blobWithTail(imageRef, digest, TOC_TAIL_BYTES, sig),
      // From a persisted record (a restart): no request until a chunk is missing from the cache.
      openKnown: (size) => this.o.client.blob(imageRef, digest, size),
      // Asked for only when the footer says the TOC is external (the reference's -esgztoc image).
      externalToc: () => fetchExternalToc(this.o.client, imageRef, digest, o.signal),
      ...(tocDigest === undefined && o.gzIndex === true ? { gzIndex: { find: indexFinder(this.o.client, imageRef), only: this.o.requireTocDigest } } : {}),
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
    this.o.metrics.layerUnmounted(mountpoint)
    this.o.metrics.mountedLayers(-1)
  }

  /**
   * Unmount everything this filesystem mounted, then release the layers, the decode pool and
   * the chunk cache (the resolver owns them). Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const digest of [...this.ahead.keys()]) this.dropAhead(digest)
      for (const mp of [...this.mounts.keys()]) {
        await this.unmount(mp).catch((e: unknown) => this.o.log.warn({ mountpoint: mp, err: errorMessage(e) }, 'unmount failed at shutdown'))
      }
      await this.resolver.close()
      await this.decoder.close()
      await this.tocBuilder.close()
      this.gate.close()
    })()
    return this.closing
  }
}
