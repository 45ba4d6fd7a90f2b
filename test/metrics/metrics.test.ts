/**
 * The Prometheus exposition: our stargzd_* series and the reference stargz-snapshotter's
 * stargz_fs_* ones, with the reference's names, label names and operation_type values, driven
 * through the hooks the product calls. (The e2e test in test/daemon/lazy-containerd.test.ts
 * scrapes the same series from a real daemon after a lazy run.)
 */
import t from 'tap'
import { createMetrics } from '../../src/metrics/metrics.js'
import { NO_METRICS, type MetricsHooks } from '../../src/metrics/hooks.js'

const L = 'sha256:' + 'a'.repeat(64)

t.test('NO_METRICS implements every hook', async (t) => {
  const { hooks } = createMetrics({ defaultMetrics: false })
  t.same(Object.keys(NO_METRICS).sort(), Object.keys(hooks).sort())
})

t.test('reference series and labels after a lazy mount, reads and fetches', async (t) => {
  const { registry, hooks } = createMetrics({ defaultMetrics: false })
  const h: MetricsHooks = hooks
  let served = 10
  h.layerMounted('/root/snapshots/1/fs', L, () => ({ size: 1000, fetchedSize: 300, prefetchSize: 200, bytesServed: served }))
  h.layerOperation('mount', L, 12.5)
  h.layerOperation('all_prefetches_completed', L, 40)
  h.fetchedBytes(100, L, 'demand')
  h.fetchedBytes(200, L, 'prefetch')
  h.fetchLatency(0.02, L)
  h.fuseOp('read', 0.000_3, L)
  h.fuseOp('readdir', 0.000_01, L)
  h.fuseOp('getattr', 0.000_01, L)
  h.cacheHit('memory', L, 64)
  served = 4096
  const text = await registry.metrics()
  const has = (re: RegExp, what: string): void => { t.match(text, re, what) }
  has(/^# TYPE stargz_fs_operation_duration_milliseconds histogram$/m, 'ms histogram')
  has(new RegExp(`^stargz_fs_operation_duration_milliseconds_bucket\\{le="16",operation_type="mount",layer="${L}"\\} 1$`, 'm'), 'mount 12.5 ms in the 16 ms bucket')
  has(new RegExp(`^stargz_fs_operation_duration_milliseconds_count\\{operation_type="remote_registry_get",layer="${L}"\\} 1$`, 'm'), 'registry GET timed')
  has(new RegExp(`^stargz_fs_operation_duration_milliseconds_count\\{operation_type="all_prefetches_completed",layer="${L}"\\} 1$`, 'm'), 'prefetch completion')
  has(new RegExp(`^stargz_fs_operation_duration_microseconds_count\\{operation_type="read_on_demand",layer="${L}"\\} 1$`, 'm'), 'FUSE read in µs')
  has(new RegExp(`^stargz_fs_operation_duration_microseconds_count\\{operation_type="node_readdir",layer="${L}"\\} 1$`, 'm'), 'readdir in µs')
  has(new RegExp(`^stargz_fs_operation_count\\{operation_type="on_demand_read_access_count",layer="${L}"\\} 1$`, 'm'), 'reads counted (no _total suffix, as the reference)')
  has(new RegExp(`^stargz_fs_operation_count\\{operation_type="on_demand_remote_registry_fetch_count",layer="${L}"\\} 1$`, 'm'), 'only the on-demand fetch counted')
  has(new RegExp(`^stargz_fs_bytes_served\\{operation_type="on_demand_bytes_fetched",layer="${L}"\\} 100$`, 'm'), 'on-demand bytes fetched')
  has(new RegExp(`^stargz_fs_bytes_served\\{operation_type="on_demand_bytes_served",layer="${L}"\\} 4096$`, 'm'), 'bytes served, read at scrape time')
  has(new RegExp(`^stargz_fs_layer_fetched_size_bytes\\{digest="${L}",mountpoint="/root/snapshots/1/fs"\\} 300$`, 'm'), 'layer fetched size')
  has(new RegExp(`^stargz_fs_layer_prefetch_size_bytes\\{digest="${L}",mountpoint="/root/snapshots/1/fs"\\} 200$`, 'm'), 'layer prefetch size')
  has(new RegExp(`^stargz_fs_layer_size_bytes\\{digest="${L}",mountpoint="/root/snapshots/1/fs"\\} 1000$`, 'm'), 'layer size')
  has(/^stargzd_fetched_bytes_total 300$/m, 'our total kept')
  has(new RegExp(`^stargzd_layer_fetched_bytes_total\\{layer="${L}",mode="demand"\\} 100$`, 'm'), 'per-layer fetched bytes by mode')
  has(new RegExp(`^stargzd_layer_cache_hit_bytes_total\\{layer="${L}"\\} 64$`, 'm'), 'per-layer cached bytes')
  has(new RegExp(`^stargzd_layer_read_duration_seconds_count\\{layer="${L}"\\} 1$`, 'm'), 'per-layer read latency')
  has(/^stargzd_fuse_operation_duration_seconds_count\{op="getattr"\} 1$/m, 'our FUSE histogram kept')

  h.layerUnmounted('/root/snapshots/1/fs')
  const after = await registry.metrics()
  t.notMatch(after, /^stargz_fs_layer_size_bytes\{/m, 'an unmounted layer leaves the per-layer series')
})

t.test('a probe that throws reads as zeros, not a failed scrape', async (t) => {
  const { registry, hooks } = createMetrics({ defaultMetrics: false })
  hooks.layerMounted('/m', L, () => { throw new Error('closing') })
  t.match(await registry.metrics(), new RegExp(`^stargz_fs_layer_size_bytes\\{digest="${L}",mountpoint="/m"\\} 0$`, 'm'))
})
