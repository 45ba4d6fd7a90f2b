import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DirCache } from '../../src/cache/dir-cache.js'
import { ENTRY_OVERHEAD, MemoryCache } from '../../src/cache/memory-cache.js'
import { TieredCache } from '../../src/cache/tiered-cache.js'
import type { ChunkCache } from '../../src/cache/types.js'

function chunk(n: number): { key: string; data: Buffer } {
  const data = randomBytes(n)
  return { key: 'sha256:' + createHash('sha256').update(data).digest('hex'), data }
}

/** The part of a tap test the helpers need. */
interface Teardown { teardown(fn: () => unknown): void }

async function tempDir(t: Teardown): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'stargzd-cache-'))
  t.teardown(() => rm(d, { recursive: true, force: true }))
  return d
}

interface Impl {
  name: string
  make(t: Teardown, maxBytes: number): Promise<ChunkCache>
}

const impls: Impl[] = [
  // The memory cache charges what entries retain (overhead included): give it room for that.
  { name: 'memory', make: async (_t, maxBytes) => new MemoryCache({ maxBytes: maxBytes + 4 * ENTRY_OVERHEAD }) },
  { name: 'dir', make: async (t, maxBytes) => DirCache.open({ root: await tempDir(t), maxBytes }) },
  {
    name: 'tiered',
    // The memory tier is as big as the bound so eviction tests see the same LRU order in both tiers.
    make: async (t, maxBytes) => new TieredCache(new MemoryCache({ maxBytes: maxBytes + 4 * ENTRY_OVERHEAD }), await DirCache.open({ root: await tempDir(t), maxBytes })),
  },
]

for (const impl of impls) {
  t.test(`${impl.name}: put then get returns the same bytes; unknown key misses`, async (t) => {
    const c = await impl.make(t, 1 << 20)
    t.teardown(() => c.close())
    const a = chunk(5000)
    const b = chunk(1)
    await c.put(a.key, a.data)
    await c.put(b.key, b.data)
    t.same(await c.get(a.key), a.data)
    t.same(await c.get(b.key), b.data)
    t.equal(await c.get(chunk(10).key), undefined)
    t.equal(c.stats().entries, 2)
    if (impl.name === 'memory') t.ok(c.stats().bytes >= 5001, 'memory charges at least the payload')
    else t.equal(c.stats().bytes, 5001)
  })

  t.test(`${impl.name}: bounded in bytes, least recently used goes first`, async (t) => {
    const c = await impl.make(t, 3000)
    t.teardown(() => c.close())
    const [a, b, d, e] = [chunk(1000), chunk(1000), chunk(1000), chunk(1000)]
    await c.put(a.key, a.data)
    await c.put(b.key, b.data)
    await c.put(d.key, d.data)
    t.ok(await c.get(a.key), 'a used: b is now the oldest')
    await c.put(e.key, e.data)
    t.ok(c.stats().bytes <= (impl.name === 'memory' ? 3000 + 4 * ENTRY_OVERHEAD : 3000), `bytes ${c.stats().bytes} within bound`)
    t.equal(await c.get(b.key), undefined, 'b evicted')
    t.same(await c.get(a.key), a.data)
    t.same(await c.get(d.key), d.data)
    t.same(await c.get(e.key), e.data)
    t.ok(c.stats().evictions >= 1, 'eviction counted')
  })

  t.test(`${impl.name}: delete`, async (t) => {
    const c = await impl.make(t, 1 << 20)
    t.teardown(() => c.close())
    const a = chunk(100)
    await c.put(a.key, a.data)
    await c.delete(a.key)
    t.equal(await c.get(a.key), undefined)
    t.equal(c.stats().bytes, 0)
  })
}

t.test('memory: an entry bigger than the whole cache is not kept and evicts nothing', async (t) => {
  const c = new MemoryCache({ maxBytes: 100 + ENTRY_OVERHEAD })
  const a = chunk(60)
  await c.put(a.key, a.data)
  await c.put('big', Buffer.alloc(101))
  t.equal(c.peek('big'), undefined)
  t.same(c.peek(a.key), a.data)
})

t.test('dir: rejects keys that are not sha256 digests', async (t) => {
  const c = await DirCache.open({ root: await tempDir(t), maxBytes: 1000 })
  t.throws(() => c.put('../../etc/passwd', Buffer.alloc(1)), { code: 'ERR_INVALID_ARGUMENT' })
  await t.rejects(c.get('sha256:XYZ'), { code: 'ERR_INVALID_ARGUMENT' })
})

t.test('dir: layout is <root>/<2 hex>/<hex>, no temp files left', async (t) => {
  const root = await tempDir(t)
  const c = await DirCache.open({ root, maxBytes: 1 << 20 })
  const a = chunk(300)
  await c.put(a.key, a.data)
  const hex = a.key.slice(7)
  t.same(await readFile(join(root, hex.slice(0, 2), hex)), a.data)
  t.same(await readdir(join(root, 'tmp')), [])
})

t.test('dir: reused after restart, index rebuilt from disk, LRU order from file times', async (t) => {
  const root = await tempDir(t)
  const first = await DirCache.open({ root, maxBytes: 1 << 20 })
  const items = [chunk(1000), chunk(1000), chunk(1000)]
  for (const it of items) await first.put(it.key, it.data)
  await first.close()
  // Make items[1] the oldest on disk.
  const times = [2_000_000, 1_000_000, 3_000_000]
  for (let i = 0; i < 3; i++) {
    const hex = (items[i] as { key: string }).key.slice(7)
    const at = new Date(times[i] as number)
    await utimes(join(root, hex.slice(0, 2), hex), at, at)
  }
  const again = await DirCache.open({ root, maxBytes: 1 << 20 })
  t.equal(again.stats().entries, 3)
  t.equal(again.stats().bytes, 3000)
  for (const it of items) t.same(await again.get(it.key), it.data, 'served from disk after restart')
  await again.close()
  for (let i = 0; i < 3; i++) {
    const hex = (items[i] as { key: string }).key.slice(7)
    const at = new Date(times[i] as number)
    await utimes(join(root, hex.slice(0, 2), hex), at, at)
  }
  const small = await DirCache.open({ root, maxBytes: 2000 })
  t.equal(small.stats().entries, 2, 'bound enforced at open')
  t.equal(await small.get((items[1] as { key: string }).key), undefined, 'the oldest file went')
  t.ok(await small.get((items[0] as { key: string }).key))
})

t.test('dir: a corrupt or truncated file is detected by its hash, deleted, and is a miss', async (t) => {
  const root = await tempDir(t)
  const corrupt: string[] = []
  const c = await DirCache.open({ root, maxBytes: 1 << 20, onCorrupt: (i) => corrupt.push(i.key) })
  const a = chunk(4096)
  const b = chunk(4096)
  await c.put(a.key, a.data)
  await c.put(b.key, b.data)
  const pa = c.pathOf(a.key)
  const bytes = Buffer.from(a.data)
  bytes[100] = (bytes[100] as number) ^ 0xff
  await writeFile(pa, bytes)
  await truncate(c.pathOf(b.key), 10)
  t.equal(await c.get(a.key), undefined)
  t.equal(await c.get(b.key), undefined)
  await t.rejects(stat(pa), { code: 'ENOENT' }, 'bad file removed')
  await t.rejects(stat(c.pathOf(b.key)), { code: 'ENOENT' })
  t.equal(c.stats().corrupt, 2)
  t.same(corrupt.sort(), [a.key, b.key].sort())
  t.equal(c.stats().entries, 0)
  await c.put(a.key, a.data)
  t.same(await c.get(a.key), a.data, 'can be written again')
})

t.test('dir: a file another process wrote after our start is found', async (t) => {
  const root = await tempDir(t)
  const mine = await DirCache.open({ root, maxBytes: 1 << 20 })
  const other = await DirCache.open({ root, maxBytes: 1 << 20 })
  const a = chunk(700)
  await other.put(a.key, a.data)
  t.same(await mine.get(a.key), a.data)
})

t.test('dir: concurrent writers of the same keys (two instances, as two processes would be)', async (t) => {
  const root = await tempDir(t)
  const x = await DirCache.open({ root, maxBytes: 1 << 24 })
  const y = await DirCache.open({ root, maxBytes: 1 << 24 })
  const items = Array.from({ length: 20 }, (_, i) => chunk(1000 + i * 997))
  await Promise.all(items.flatMap((it) => [x.put(it.key, it.data), y.put(it.key, it.data), x.put(it.key, it.data)]))
  for (const it of items) {
    t.same(await x.get(it.key), it.data)
    t.same(await y.get(it.key), it.data)
  }
  t.equal(x.stats().corrupt + y.stats().corrupt, 0)
  t.same(await readdir(join(root, 'tmp')), [], 'every temp file renamed or removed')
  const reopened = await DirCache.open({ root, maxBytes: 1 << 24 })
  t.equal(reopened.stats().entries, 20)
})

t.test('dir: stale temp files from a crashed writer are removed at open', async (t) => {
  const root = await tempDir(t)
  await (await DirCache.open({ root, maxBytes: 1000 })).close()
  const stale = join(root, 'tmp', 'abc.1.x')
  const fresh = join(root, 'tmp', 'abc.2.y')
  await writeFile(stale, 'x')
  await writeFile(fresh, 'y')
  const old = new Date(Date.now() - 3_600_000)
  await utimes(stale, old, old)
  await DirCache.open({ root, maxBytes: 1000 })
  t.same(await readdir(join(root, 'tmp')), ['abc.2.y'])
})

t.test('tiered: background puts skip memory; reads from disk are promoted', async (t) => {
  const mem = new MemoryCache({ maxBytes: 1 << 20 })
  const disk = await DirCache.open({ root: await tempDir(t), maxBytes: 1 << 20 })
  const c = new TieredCache(mem, disk)
  const a = chunk(2000)
  await c.put(a.key, a.data, { background: true })
  t.equal(c.peek(a.key), undefined, 'not in memory')
  t.same(await c.get(a.key), a.data, 'from disk')
  t.same(c.peek(a.key), a.data, 'promoted')
  const b = chunk(10)
  const p = c.put(b.key, b.data)
  t.same(c.peek(b.key), b.data, 'memory tier filled synchronously')
  await p
})
