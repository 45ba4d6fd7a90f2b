/**
 * The reference stargz-snapshotter's Prometheus series, with its names, label names, buckets and
 * `operation_type` values, so its Grafana dashboards and alerts work against stargzd:
 *
 *   stargz_fs_operation_duration_milliseconds{operation_type,layer}  histogram, 1..16384 ms
 *       mount, remote_registry_get, all_prefetches_completed
 *   stargz_fs_operation_duration_microseconds{operation_type,layer}  histogram, 1..1024 µs
 *       read_on_demand, node_readdir
 *   stargz_fs_operation_count{operation_type,layer}                  counter
 *       on_demand_read_access_count, on_demand_remote_registry_fetch_count
 *   stargz_fs_bytes_served{operation_type,layer}                     gauge
 *       on_demand_bytes_served, on_demand_bytes_fetched
 *   stargz_fs_layer_fetched_size_bytes{digest,mountpoint}            per mounted layer, at scrape
 *   stargz_fs_layer_prefetch_size_bytes{digest,mountpoint}
 *   stargz_fs_layer_size_bytes{digest,mountpoint}
 *
 * The reference also times stargz_footer_get / stargz_toc_get / stargz_toc_json_deserialize
 * separately; we open footer + TOC in one step (src/estargz/reader.ts) and do not split it.
 * The reference's counters carry no `_total` suffix; neither do these.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { FetchMode, LayerOperation, LayerSizes } from './hooks.js'

const MS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
const US_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]

interface Tracked { digest: string; sizes: () => LayerSizes }

export interface ReferenceMetrics {
  operation(op: LayerOperation | 'remote_registry_get', layer: string, ms: number): void
  fetched(bytes: number, layer: string, mode: FetchMode | undefined): void
  fuseOp(op: string, seconds: number, layer: string): void
  track(mountpoint: string, digest: string, sizes: () => LayerSizes): void
  untrack(mountpoint: string): void
}

export function createReferenceMetrics(registry: Registry): ReferenceMetrics {
  const tracked = new Map<string, Tracked>()
  const registers = [registry]
  const ms = new Histogram({
    name: 'stargz_fs_operation_duration_milliseconds',
    help: 'Latency in milliseconds of stargz snapshotter operations. Broken down by operation type and layer sha.',
    labelNames: ['operation_type', 'layer'], buckets: MS_BUCKETS, registers,
  })
  const us = new Histogram({
    name: 'stargz_fs_operation_duration_microseconds',
    help: 'Latency in microseconds of stargz snapshotter operations. Broken down by operation type and layer sha.',
    labelNames: ['operation_type', 'layer'], buckets: US_BUCKETS, registers,
  })
  const count = new Counter({
    name: 'stargz_fs_operation_count',
    help: 'The count of stargz snapshotter operations. Broken down by operation type and layer sha.',
    labelNames: ['operation_type', 'layer'], registers,
  })
  const served = new Gauge({
    name: 'stargz_fs_bytes_served',
    help: 'The number of bytes served per stargz snapshotter operations. Broken down by operation type and layer sha.',
    labelNames: ['operation_type', 'layer'], registers,
    // Bytes served are counted by each mount (LayerMount.stats); read them when scraped.
    collect() {
      for (const t of tracked.values()) served.set({ operation_type: 'on_demand_bytes_served', layer: t.digest }, safe(t).bytesServed)
    },
  })
  // Per mounted layer, as the reference's layer collector: values read from the live layer at
  // scrape time, gone once it is unmounted. Counter type, as the reference exposes them.
  const perLayer = (name: string, help: string, pick: (s: LayerSizes) => number): void => {
    const c: Counter<'digest' | 'mountpoint'> = new Counter({
      name, help, labelNames: ['digest', 'mountpoint'], registers,
      collect() {
        c.reset()
        for (const [mountpoint, t] of tracked) c.inc({ digest: t.digest, mountpoint }, pick(safe(t)))
      },
    })
  }
  perLayer('stargz_fs_layer_fetched_size_bytes', 'Total fetched size of the layer', (s) => s.fetchedSize)
  perLayer('stargz_fs_layer_prefetch_size_bytes', 'Total prefetched size of the layer', (s) => s.prefetchSize)
  perLayer('stargz_fs_layer_size_bytes', 'Total size of the layer', (s) => s.size)

  return {
    operation: (op, layer, v) => ms.observe({ operation_type: op, layer }, v),
    fetched: (bytes, layer, mode) => {
      if (mode !== 'demand') return
      count.inc({ operation_type: 'on_demand_remote_registry_fetch_count', layer })
      served.inc({ operation_type: 'on_demand_bytes_fetched', layer }, bytes)
    },
    fuseOp: (op, seconds, layer) => {
      if (op === 'read') {
        us.observe({ operation_type: 'read_on_demand', layer }, seconds * 1e6)
        count.inc({ operation_type: 'on_demand_read_access_count', layer })
      } else if (op === 'readdir') {
        us.observe({ operation_type: 'node_readdir', layer }, seconds * 1e6)
      }
    },
    track: (mountpoint, digest, sizes) => { tracked.set(mountpoint, { digest, sizes }) },
    untrack: (mountpoint) => { tracked.delete(mountpoint) },
  }
}

/** A probe that throws (layer closing under us) reads as zeros rather than failing the scrape. */
function safe(t: Tracked): LayerSizes {
  try { return t.sizes() } catch { return { size: 0, fetchedSize: 0, prefetchSize: 0, bytesServed: 0 } }
}
