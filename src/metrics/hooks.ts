/**
 * Metric hooks handed to the modules that observe things (registry fetches, cache, FUSE, the
 * snapshotter). Those modules depend on this interface only, never on prom-client; the daemon
 * passes the implementation from ./metrics.ts, tests pass NO_METRICS or a recorder.
 *
 * The optional `digest` arguments name the layer, so the per-layer series (ours and the
 * reference stargz-snapshotter's `stargz_fs_*`, see ./reference.ts) can be labelled.
 */

/** How a fetch came about: an on-demand read, the mount-time prefetch, or background fetch. */
export type FetchMode = 'demand' | 'prefetch' | 'background'

/** Step timings the reference reports as `stargz_fs_operation_duration_milliseconds{operation_type}`. */
export type LayerOperation = 'mount' | 'all_prefetches_completed'

/** A mounted layer's sizes, read at scrape time. */
export interface LayerSizes {
  /** Compressed size of the blob. */
  size: number
  /** Bytes of the blob fetched and verified so far (what the state file reports). */
  fetchedSize: number
  /** Bytes the mount-time prefetch fetched (0 when skipped or not finished). */
  prefetchSize: number
  /** Uncompressed bytes FUSE reads returned. */
  bytesServed: number
}

export interface MetricsHooks {
  /** Bytes received from a registry for a layer. */
  fetchedBytes(bytes: number, digest?: string, mode?: FetchMode): void
  /** Duration of one registry fetch (a range request), in seconds. */
  fetchLatency(seconds: number, digest?: string): void
  /** A chunk answered from a cache tier; `bytes` its size. */
  cacheHit(tier: 'memory' | 'disk', digest?: string, bytes?: number): void
  cacheMiss(digest?: string): void
  /** Duration of one FUSE operation, in seconds. */
  fuseOp(op: string, seconds: number, digest?: string): void
  /** A step of bringing up a layer took `ms` milliseconds. */
  layerOperation(op: LayerOperation, digest: string, ms: number): void
  /** A lazy layer is mounted at `mountpoint`; `sizes` is called on every scrape until layerUnmounted. */
  layerMounted(mountpoint: string, digest: string, sizes: () => LayerSizes): void
  layerUnmounted(mountpoint: string): void
  /** A lazy layer was mounted (+1) or unmounted (-1). */
  mountedLayers(delta: 1 | -1): void
  /** A remote snapshot fell back to a normal one; `reason` is a short fixed category. */
  fallback(reason: string): void
}

export const NO_METRICS: MetricsHooks = Object.freeze({
  fetchedBytes: () => undefined,
  fetchLatency: () => undefined,
  cacheHit: () => undefined,
  cacheMiss: () => undefined,
  fuseOp: () => undefined,
  layerOperation: () => undefined,
  layerMounted: () => undefined,
  layerUnmounted: () => undefined,
  mountedLayers: () => undefined,
  fallback: () => undefined,
})
