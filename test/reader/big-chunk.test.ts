/**
 * Issue #10 §3: memory per read is bounded whatever the chunk size. A chunk over
 * maxChunkInMemoryBytes is fetched in pieces, inflated and verified on the stream, and either
 * written to the disk cache (then served by range) or streamed per read keeping only the window.
 * Prefetch of [0, landmark) is cut into capped spans.
 */
import { allPayloads } from '../../src/estargz/toc-index.js'
import t from 'tap'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DirCache } from '../../src/cache/dir-cache.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { TieredCache } from '../../src/cache/tiered-cache.js'
import type { ChunkCache } from '../../src/cache/types.js'
import { EstargzReader } from '../../src/estargz/reader.js'
import { ChunkReader } from '../../src/reader/chunk-reader.js'
import { splitSpan } from '../../src/reader/span-plan.js'
import { buildMiniEstargz, type MiniBlob } from '../../harness/mini-estargz.js'
import { buildLandmarkBlob, CountingSource, prng } from './fixtures.js'

const PIECE = 64 * 1024
const LIMIT = 256 * 1024
const data = prng(3 * 1024 * 1024, 11)
const zeros = Buffer.alloc(48 * 1024 * 1024) // a "chunk-size bomb": 48 MiB from ~48 KiB of gzip
const mini = buildMiniEstargz([
  { name: 'small', data: Buffer.from('small file\n') },
  { name: 'big', data },
  { name: 'bomb', data: zeros },
])

async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'stargzd-big-'))
  t.teardown(() => rm(d, { recursive: true, force: true }))
  return d
}

async function setup(m: MiniBlob, cache?: ChunkCache) {
  const source = new CountingSource(m.blob)
  const er = await EstargzReader.open(source, { tocDigest: m.tocDigest })
  source.requests.length = 0
  const opts: ConstructorParameters<typeof ChunkReader>[0] = { reader: er, source, maxChunkInMemoryBytes: LIMIT, streamPieceBytes: PIECE, readaheadBytes: 0 }
  if (cache) opts.cache = cache
  return { source, reader: new ChunkReader(opts), er }
}

t.test('no cache: a 4 KiB read of a big chunk streams it in pieces and returns only the window', async (t) => {
  const { source, reader } = await setup(mini)
  t.same(await reader.read('big', 1_000_000, 4096), data.subarray(1_000_000, 1_004_096))
  t.ok(source.requests.length > 1, `${source.requests.length} piece requests`)
  t.ok(source.requests.every((r) => r.length <= PIECE), 'no request larger than a piece')
  t.same(await reader.read('bomb', 40 << 20, 4096), Buffer.alloc(4096), 'the bomb reads as zeros, 4 KiB of it')
  // A read across the end of the file is clamped, and the whole thing still verifies.
  t.same(await reader.read('big', data.length - 10, 4096), data.subarray(data.length - 10))
  t.same(await reader.read('small', 0, 100), Buffer.from('small file\n'), 'small chunks take the usual path')
  t.equal(reader.inFlight, 0)
})

t.test('no cache: concurrent reads of one big chunk share one stream', async (t) => {
  const { source, reader } = await setup(mini)
  const offs = [0, 131072, 262144, 393216, 524288, 655360, 786432, 917504]
  const got = await Promise.all(offs.map((o) => reader.read('big', o, 131072)))
  got.forEach((b, i) => t.same(b, data.subarray(offs[i], offs[i]! + 131072)))
  const member = reader.index.chunks('big')[0]!
  t.equal(source.bytesRead, member.compressedEnd - member.compressedOffset, 'the member was streamed once for all eight')
  t.equal(reader.inFlight, 0)
})

t.test('a big chunk whose digest lies is refused, and nothing is stored', async (t) => {
  const lying = buildMiniEstargz([{ name: 'big', data }], {
    mutateToc: (toc) => { toc.entries[0]!.chunkDigest = 'sha256:' + 'd'.repeat(64) },
  })
  const root = await tempDir(t)
  const dir = await DirCache.open({ root, maxBytes: 64 << 20 })
  for (const cache of [undefined, dir]) {
    const { reader } = await setup(lying, cache)
    await t.rejects(reader.read('big', 0, 10), { code: 'ERR_CHUNK_DIGEST_MISMATCH' })
  }
  t.equal(dir.stats().entries, 0)
  t.same(await readdir(join(root, 'tmp')), [], 'the partial stream was removed')
  await dir.close()
})

t.test('with a disk cache: streamed into it once (concurrent readers share the stream), then served by range', async (t) => {
  const root = await tempDir(t)
  const cache = new TieredCache(new MemoryCache({ maxBytes: 1 << 20 }), await DirCache.open({ root, maxBytes: 256 << 20 }))
  t.teardown(() => cache.close())
  const { source, reader } = await setup(mini, cache)
  const reads = await Promise.all([0, 500_000, 2_000_000, 3_000_000].map((off) => reader.read('big', off, 8192)))
  reads.forEach((b, i) => t.same(b, data.subarray([0, 500_000, 2_000_000, 3_000_000][i], [0, 500_000, 2_000_000, 3_000_000][i]! + 8192)))
  const member = reader.index.chunks('big')[0]!
  t.equal(source.bytesRead, member.compressedEnd - member.compressedOffset, 'the member was fetched once')
  const before = source.reads
  t.same(await reader.read('big', 1234, 100_000), data.subarray(1234, 101_234))
  t.equal(source.reads, before, 'served from the cache file')
  t.equal(cache.front.stats().entries, 0, 'never held in the memory tier')
})

t.test('an on-demand read that joined a background stream which is then stopped still gets its bytes', async (t) => {
  const root = await tempDir(t)
  const cache = await DirCache.open({ root, maxBytes: 256 << 20 })
  t.teardown(() => cache.close())
  const { source, reader } = await setup(mini, cache)
  const big = reader.index.chunks('big')[0]!
  source.hold()
  const ac = new AbortController()
  const bg = reader.loadChunks([big], { mode: 'background', signal: ac.signal })
  const demand = reader.read('big', 2_000_000, 4096)
  await new Promise((r) => setTimeout(r, 50))
  ac.abort(new Error('preempted'))
  source.release()
  await t.rejects(bg)
  // The on-demand reader streams for itself once the background stream failed.
  await new Promise((r) => setTimeout(r, 10))
  source.release()
  t.same(await demand, data.subarray(2_000_000, 2_004_096))
  t.equal(reader.inFlight, 0)
})

t.test('background fetch streams big chunks into the disk cache and skips them without one', async (t) => {
  const root = await tempDir(t)
  const cache = await DirCache.open({ root, maxBytes: 256 << 20 })
  t.teardown(() => cache.close())
  const a = await setup(mini, cache)
  await a.reader.loadChunks(allPayloads(a.reader.index), { mode: 'background' })
  t.equal(cache.stats().entries, 3, 'small, big and bomb stored')
  const b = await setup(mini)
  await b.reader.loadChunks(allPayloads(b.reader.index), { mode: 'background' })
  const bigRefs = allPayloads(b.reader.index).filter((r) => b.reader.isBig(r))
  t.equal(b.source.requests.filter((q) => bigRefs.some((r) => q.offset >= r.compressedOffset && q.offset < r.compressedEnd)).length, 0, 'nothing streamed for nothing to keep')
})

t.test('prefetch of [0, landmark) goes out as capped spans covering the whole range', async (t) => {
  const files = Array.from({ length: 40 }, (_, i) => ({ name: `p/${i}`, data: prng(50_000, 100 + i) }))
  const m = buildLandmarkBlob(files, [{ name: 'rest', data: prng(1000, 1) }])
  const source = new CountingSource(m.blob)
  const er = await EstargzReader.open(source)
  source.requests.length = 0
  const cap = 256 * 1024
  const reader = new ChunkReader({ reader: er, source, maxSpanBytes: cap, cache: new MemoryCache({ maxBytes: 64 << 20 }) })
  const end = er.index.landmark?.offset ?? 0
  const refs = er.index.payloads.filter((p) => p.compressedEnd <= end)
  await reader.loadChunks(refs, { mode: 'prefetch', span: { offset: 0, length: end } })
  t.ok(source.requests.length > 1, `${source.requests.length} requests`)
  t.ok(source.requests.every((r) => r.length <= cap), 'each within the span cap')
  const sorted = [...source.requests].sort((x, y) => x.offset - y.offset)
  t.equal(sorted[0]!.offset, 0)
  for (let i = 1; i < sorted.length; i++) t.equal(sorted[i]!.offset, sorted[i - 1]!.offset + sorted[i - 1]!.length, 'contiguous')
  t.equal(sorted.at(-1)!.offset + sorted.at(-1)!.length, end, 'up to the landmark')
  for (const f of files.slice(0, 3)) t.same(await reader.read(f.name, 0, 100), f.data.subarray(0, 100))
})

t.test('splitSpan cuts around streamed members and keeps single members whole', async (t) => {
  const mk = (o: number, e: number) => ({ name: 'x', chunkOffset: 0, chunkSize: 1, compressedOffset: o, compressedEnd: e, digest: undefined })
  const a = mk(10, 100); const b = mk(100, 400); const big = mk(400, 5000); const c = mk(5000, 5100)
  const spans = splitSpan({ offset: 0, length: 5200 }, [a, b, c], 200, [big])
  t.same(spans.map((s) => [s.offset, s.length, s.refs.length]), [[0, 100, 1], [100, 300, 1], [5000, 200, 1]])
})
