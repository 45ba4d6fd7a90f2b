/** The prom-client implementation of MetricsHooks, on a registry of its own (no global state). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { MetricsHooks } from './hooks.js'

export interface Metrics {
  registry: Registry
  hooks: MetricsHooks
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry()
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'stargzd_' })
  const fetched = new Counter({ name: 'stargzd_fetched_bytes_total', help: 'Bytes fetched from registries', registers: [registry] })
  const fetchLatency = new Histogram({
    name: 'stargzd_fetch_duration_seconds',
    help: 'Duration of registry range fetches',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  })
  const cacheHits = new Counter({ name: 'stargzd_cache_hits_total', help: 'Chunk cache hits', labelNames: ['tier'], registers: [registry] })
  const cacheMisses = new Counter({ name: 'stargzd_cache_misses_total', help: 'Chunk cache misses', registers: [registry] })
  const fuseOps = new Histogram({
    name: 'stargzd_fuse_operation_duration_seconds',
    help: 'Duration of FUSE operations',
    labelNames: ['op'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  })
  const mounted = new Gauge({ name: 'stargzd_mounted_layers', help: 'Lazy layers currently mounted', registers: [registry] })
  const fallbacks = new Counter({ name: 'stargzd_remote_snapshot_fallbacks_total', help: 'Remote snapshots that fell back to normal unpack', labelNames: ['reason'], registers: [registry] })
  const hooks: MetricsHooks = {
    fetchedBytes: (bytes) => fetched.inc(bytes),
    fetchLatency: (s) => fetchLatency.observe(s),
    cacheHit: (tier) => cacheHits.inc({ tier }),
    cacheMiss: () => cacheMisses.inc(),
    fuseOp: (op, s) => fuseOps.observe({ op }, s),
    mountedLayers: (d) => mounted.inc(d),
    fallback: (reason) => fallbacks.inc({ reason }),
  }
  return { registry, hooks }
}
