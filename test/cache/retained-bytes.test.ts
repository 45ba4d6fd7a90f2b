/**
 * Issue #12: the memory cache's bound counts what entries really retain. Tiny chunks handed in as
 * views of big allocations (what decoders produce) must not keep those allocations alive.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { ENTRY_OVERHEAD, MemoryCache } from '../../src/cache/memory-cache.js'

setFlagsFromString('--expose-gc')
const collect = runInNewContext('gc') as () => void

function key(i: number): string {
  return 'sha256:' + createHash('sha256').update(String(i)).digest('hex')
}

function gc(): void {
  collect()
  collect()
}

t.test('20k cached 50-byte chunks, each a view of its own 16 KiB buffer, retain about their payload', async (t) => {
  const n = 20_000
  const c = new MemoryCache({ maxBytes: 256 << 20 })
  gc()
  const before = process.memoryUsage().arrayBuffers
  for (let i = 0; i < n; i++) {
    // What gunzipSync hands back for a 50-byte member: a view of a 16 KiB output buffer.
    const parent = Buffer.allocUnsafeSlow(16 * 1024)
    parent.fill(i & 0xff, 0, 50)
    c.putSync(key(i), parent.subarray(0, 50))
  }
  gc()
  const grown = process.memoryUsage().arrayBuffers - before
  t.equal(c.stats().entries, n, 'all kept')
  // Keeping the views would retain n * 16 KiB = 312 MiB.
  t.ok(grown < 8 << 20, `array buffers grew by ${grown} bytes for ${n} entries (views would keep ${n * 16384})`)
  t.ok(c.stats().bytes >= n * 50 && c.stats().bytes <= n * (56 + ENTRY_OVERHEAD) + (256 << 10), `charged ${c.stats().bytes} bytes`)
  const hit = c.peek(key(123))
  t.equal(hit?.length, 50)
  t.ok(hit?.every((b) => b === 123), 'bytes copied intact')
})

t.test('a big chunk handed in as a small view of a bigger buffer is copied out; charged its real size', async (t) => {
  const c = new MemoryCache({ maxBytes: 64 << 20 })
  const parent = Buffer.allocUnsafeSlow(2 << 20)
  parent.fill(7)
  const view = parent.subarray(0, 100_000)
  c.putSync(key(1), view)
  const got = c.peek(key(1)) as Buffer
  t.equal(got.buffer.byteLength, 100_000, 'does not keep the 2 MiB parent')
  t.equal(c.stats().bytes, 100_000 + ENTRY_OVERHEAD)
  // An exact buffer is kept as it is.
  const exact = Buffer.allocUnsafeSlow(200_000)
  c.putSync(key(2), exact)
  t.equal(c.peek(key(2)), exact)
})

t.test('the bound holds by retained bytes: slabs are charged while an entry lives in them', async (t) => {
  const c = new MemoryCache({ maxBytes: 1 << 20 })
  for (let i = 0; i < 50_000; i++) c.putSync(key(i), Buffer.alloc(100, i & 0xff))
  t.ok(c.stats().bytes <= 1 << 20, `within bound: ${c.stats().bytes}`)
  t.ok(c.stats().evictions > 0)
  for (let i = 0; i < 50_000; i++) await c.delete(key(i))
  t.equal(c.stats().bytes, 0, 'nothing charged once empty')
})
