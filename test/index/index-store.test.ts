import t from 'tap'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { MetadataBudget } from '../../src/estargz/metadata-budget.js'
import { IndexStore } from '../../src/index/index-store.js'
import { CompactIndex } from '../../src/index/compact-index.js'
import { openLayer } from '../../src/layer/layer.js'
import { PriorityGate } from '../../src/task/priority-gate.js'
import { WorkerChunkDecoder } from '../../src/reader/worker-decoder.js'
import type { MiniFile } from '../../harness/mini-estargz.js'
import { buildLandmarkBlob, CountingSource, prng } from '../reader/fixtures.js'

const files: MiniFile[] = [
  { name: 'bin', type: 'dir' },
  { name: 'bin/sh', data: prng(50_000, 1), chunkSize: 16 * 1024 },
  { name: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') },
  { name: 'usr/bin/link', type: 'hardlink', linkName: 'etc/passwd' },
]
const mini = buildLandmarkBlob(files.slice(0, 2), files.slice(2))
const decoder = new WorkerChunkDecoder()
t.teardown(() => decoder.close())

async function tmp(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-index-store-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function layerOpts(store: IndexStore, source: CountingSource, digest = 'sha256:' + 'ab'.repeat(32)) {
  // The store persists the compact index, which is opt-in (defaultIndexKind in src/layer/layer.ts).
  return { digest, source, tocDigest: mini.tocDigest, cache: new MemoryCache({ maxBytes: 16 << 20 }), decoder, gate: new PriorityGate({ graceMs: 0 }), noBackgroundFetch: true, noPrefetch: true, indexStore: store, index: 'compact' as const }
}

t.test('a layer re-opens from the persisted index without reading the blob; same TOC digest = one shared index', async (t) => {
  const dir = await tmp(t)
  const budget = new MetadataBudget(1 << 30)
  const store = new IndexStore(dir, { budget })
  const first = new CountingSource(mini.blob)
  const a = await openLayer(layerOpts(store, first))
  t.ok(first.requests.length > 0, 'first open fetched footer and TOC')
  await store.flush()
  t.same((await readdir(dir)).sort(), [`${mini.tocDigest.slice(7)}.json`, `${mini.tocDigest.slice(7)}.sgzidx`], 'index + record written')
  // A second layer with the same TOC digest (another image) shares the index in memory.
  const second = new CountingSource(mini.blob)
  const b = await openLayer(layerOpts(store, second, 'sha256:' + 'cd'.repeat(32)))
  t.equal(second.requests.length, 0, 'shared: no TOC fetched')
  t.equal(b.index, a.index, 'one index object for both layers')
  t.equal(store.inMemory, 1)
  t.same(await b.read('etc/passwd', 0, 100), Buffer.from('root:x:0:0:root:/root:/bin/sh\n'))
  t.same(await b.read('usr/bin/link', 0, 4), Buffer.from('root'))
  await a.evict()
  await b.evict()
  t.equal(store.inMemory, 0, 'last release closed the shared index')
  t.equal(budget.usedBytes, 0, 'and gave its budget back')

  // A "restarted" process: a new store over the same dir opens the file in place, no registry.
  const store2 = new IndexStore(dir, { budget })
  const third = new CountingSource(mini.blob)
  const c = await openLayer(layerOpts(store2, third))
  t.equal(third.requests.length, 0, 'restart: index from disk, no TOC fetched')
  t.ok(c.index instanceof CompactIndex)
  t.same(await c.read('bin/sh', 0, 50_000), prng(50_000, 1))
  t.ok(third.requests.length > 0, 'payload reads still go to the blob')
  await c.evict()
})

t.test('a damaged or mismatched index file is refused, removed and rebuilt', async (t) => {
  const dir = await tmp(t)
  const store = new IndexStore(dir)
  const l = await openLayer(layerOpts(store, new CountingSource(mini.blob)))
  await store.flush()
  await l.evict()
  const { index: file, meta } = store.paths(mini.tocDigest)
  const good = await readFile(file)
  const cases: Array<[string, () => Promise<void>]> = [
    ['one flipped byte', async () => { const b = Buffer.from(good); b[100] = (b[100] as number) ^ 1; await writeFile(file, b) }],
    ['truncated', async () => writeFile(file, good.subarray(0, good.length - 5))],
    ['record for another TOC', async () => { const m = JSON.parse(await readFile(meta, 'utf8')) as Record<string, unknown>; m.tocDigest = 'sha256:' + '0'.repeat(64); await writeFile(meta, JSON.stringify(m)) }],
    ['record not JSON', async () => writeFile(meta, '{')],
  ]
  for (const [what, damage] of cases) {
    await damage()
    const problems: string[] = []
    const s = new IndexStore(dir, { onProblem: (w) => problems.push(w) })
    t.equal(await s.get(mini.tocDigest), undefined, `${what}: refused`)
    t.match(problems, [/damaged/], `${what}: reported`)
    t.same(await readdir(dir), [], `${what}: removed`)
    // The layer rebuilds it from the blob and writes it again.
    const src = new CountingSource(mini.blob)
    const again = await openLayer(layerOpts(s, src))
    t.ok(src.requests.length > 0, `${what}: rebuilt from the registry`)
    await s.flush()
    await again.evict()
  }
})

t.test('without a TOC digest the store is not consulted; a wrong blob size is not this layer', async (t) => {
  const dir = await tmp(t)
  const store = new IndexStore(dir)
  const l = await openLayer(layerOpts(store, new CountingSource(mini.blob)))
  await store.flush()
  await l.evict()
  const hit = await store.get(mini.tocDigest)
  t.ok(hit)
  t.equal(hit?.meta.blobSize, mini.blob.length)
  t.equal(hit?.meta.extra?.layerDigest, 'sha256:' + 'ab'.repeat(32))
  hit?.release()
  t.throws(() => store.paths('md5:x'), RangeError)
})
