/**
 * One set of defaults (issue #9 §5): what a library module does without options is what the
 * daemon does with an empty config file. Pins the three that used to disagree (retries 4 vs 5,
 * body timeout 30 s vs fetching_timeout_sec 300 s, background grace 500 ms vs 2000 ms).
 */
import t from 'tap'
import { buildConfig } from '../../src/config/load.js'
import { CONFIG_DEFAULTS, LIBRARY_DEFAULTS } from '../../src/config/defaults.js'
import { DEFAULTS } from '../../src/config/schema.js'
import { buildMountOptions } from '../../src/fuse/mount-options.js'
import { Transport } from '../../src/registry/transport.js'
import { PriorityGate } from '../../src/task/priority-gate.js'

t.test('the config defaults are the defaults module', async (t) => {
  t.equal(DEFAULTS, CONFIG_DEFAULTS)
  t.same(buildConfig({}), CONFIG_DEFAULTS)
})

t.test('the registry transport without options = [blob] defaults', async (t) => {
  const tr = new Transport()
  t.teardown(() => tr.close())
  const c = buildConfig({})
  t.equal(tr.opts.maxRetries, c.blob.max_retries)
  t.equal(tr.opts.maxRetries, 5)
  t.equal(tr.opts.bodyTimeoutMs, Math.ceil((c.blob.fetching_timeout_sec * 1000) / 3), 'a body gap of a third of the deadline, as the daemon sets it')
  t.equal(tr.opts.requestDeadlineMs, c.blob.fetching_timeout_sec * 1000)
  t.equal(tr.opts.backoffBaseMs, c.blob.min_wait_msec)
  t.equal(tr.opts.backoffMaxMs, c.blob.max_wait_msec)
})

t.test('the background gate without options waits the daemon\'s grace', async (t) => {
  const gate = new PriorityGate({})
  t.equal((gate as unknown as { graceMs: number }).graceMs, LIBRARY_DEFAULTS.backgroundGraceMs)
  t.equal(LIBRARY_DEFAULTS.backgroundGraceMs, 2000)
})

t.test('FUSE options: [fuse] defaults, entry_timeout and attr_timeout apart', async (t) => {
  const d = buildMountOptions()
  t.ok(d.includes(`attr_timeout=${DEFAULTS.fuse.attr_timeout}`))
  t.ok(d.includes(`entry_timeout=${DEFAULTS.fuse.entry_timeout}`))
  const o = buildMountOptions({ attrTimeoutSec: 7, entryTimeoutSec: 5 })
  t.ok(o.includes('attr_timeout=7'))
  t.ok(o.includes('entry_timeout=5'))
  t.ok(o.includes('negative_timeout=5'), 'negative lookups follow entry_timeout')
})

t.test('library defaults with a config key derive from it', async (t) => {
  const c = CONFIG_DEFAULTS
  t.equal(LIBRARY_DEFAULTS.layerTtlMs, c.resolve_result_entry_ttl_sec * 1000)
  t.equal(LIBRARY_DEFAULTS.prefetchTimeoutMs, c.prefetch_timeout_sec * 1000)
  t.equal(LIBRARY_DEFAULTS.backgroundConcurrency, c.max_concurrency)
  t.equal(LIBRARY_DEFAULTS.cache.diskBytes, c.cache.max_size_mb * 1024 * 1024)
})
