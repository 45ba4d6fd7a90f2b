/**
 * Metric hooks handed to the modules that observe things (registry fetches, cache, FUSE, the
 * snapshotter). Those modules depend on this interface only, never on prom-client; the daemon
 * passes the implementation from ./metrics.ts, tests pass NO_METRICS or a recorder.
 */
export interface MetricsHooks {
  /** Bytes received from a registry for a layer. */
  fetchedBytes(bytes: number, digest?: string): void
  /** Duration of one registry fetch (a range request), in seconds. */
  fetchLatency(seconds: number): void
  cacheHit(tier: 'memory' | 'disk'): void
  cacheMiss(): void
  /** Duration of one FUSE operation, in seconds. */
  fuseOp(op: string, seconds: number): void
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
  mountedLayers: () => undefined,
  fallback: () => undefined,
})
