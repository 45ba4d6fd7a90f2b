/**
 * The prom-client implementation of MetricsHooks, on a registry of its own (no global state):
 * our `stargzd_*` series, plus the reference's `stargz_fs_*` ones (./reference.ts).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { MetricsHooks } from './hooks.js'
import { createReferenceMetrics } from './reference.js'

export interface Metrics {
  registry: Registry
  hooks: MetricsHooks
}

/** Label for series observed outside any one layer. */
const NO_LAYER = ''

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry()
  const registers = [registry]
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'stargzd_' })
  const fetched = new Counter({ name: 'stargzd_fetched_bytes_total', help: 'Bytes fetched from registries', registers })
  const fetchLatency = new Histogram({
    name: 'stargzd_fetch_duration_seconds',
    help: 'Duration of registry range fetches',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  })
  const cacheHits = new Counter({ name: 'stargzd_cache_hits_total', help: 'Chunk cache hits', labelNames: ['tier'], registers })
  const cacheMisses = new Counter({ name: 'stargzd_cache_misses_total', help: 'Chunk cache misses', registers })
  const fuseOps = new Histogram({
    name: 'stargzd_fuse_operation_duration_seconds',
    help: 'Duration of FUSE operations',
    labelNames: ['op'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers,
  })
  const mounted = new Gauge({ name: 'stargzd_mounted_layers', help: 'Lazy layers currently mounted', registers })
  const fallbacks = new Counter({ name: 'stargzd_remote_snapshot_fallbacks_total', help: 'Remote snapshots that fell back to normal unpack', labelNames: ['reason'], registers })
  // Per layer: what each layer cost in registry bytes, what the cache saved it, how reads felt.
  const layerFetched = new Counter({ name: 'stargzd_layer_fetched_bytes_total', help: 'Bytes fetched from the registry per layer and fetch mode', labelNames: ['layer', 'mode'], registers })
  const layerCached = new Counter({ name: 'stargzd_layer_cache_hit_bytes_total', help: 'Bytes of chunks answered from the chunk cache per layer', labelNames: ['layer'], registers })
  const readLatency = new Histogram({
    name: 'stargzd_layer_read_duration_seconds',
    help: 'Duration of FUSE reads per layer, until the reply',
    labelNames: ['layer'],
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  })
  const ref = createReferenceMetrics(registry)
  const hooks: MetricsHooks = {
    fetchedBytes: (bytes, digest, mode) => {
      fetched.inc(bytes)
      if (digest === undefined) return
      layerFetched.inc({ layer: digest, mode: mode ?? 'unknown' }, bytes)
      ref.fetched(bytes, digest, mode)
    },
    fetchLatency: (s, digest) => {
      fetchLatency.observe(s)
      ref.operation('remote_registry_get', digest ?? NO_LAYER, s * 1000)
    },
    cacheHit: (tier, digest, bytes) => {
      cacheHits.inc({ tier })
      if (digest !== undefined && bytes !== undefined) layerCached.inc({ layer: digest }, bytes)
    },
    cacheMiss: () => cacheMisses.inc(),
    fuseOp: (op, s, digest) => {
      fuseOps.observe({ op }, s)
      if (digest === undefined) return
      if (op === 'read') readLatency.observe({ layer: digest }, s)
      ref.fuseOp(op, s, digest)
    },
    layerOperation: (op, digest, ms) => ref.operation(op, digest, ms),
    layerMounted: (mountpoint, digest, sizes) => ref.track(mountpoint, digest, sizes),
    layerUnmounted: (mountpoint) => ref.untrack(mountpoint),
    mountedLayers: (d) => mounted.inc(d),
    fallback: (reason) => fallbacks.inc({ reason }),
  }
  return { registry, hooks }
}
