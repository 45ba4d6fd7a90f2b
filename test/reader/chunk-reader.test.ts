import { allPayloads } from '../../src/estargz/toc-index.js'
import t from 'tap'
import fc from 'fast-check'
import { EstargzReader } from '../../src/estargz/reader.js'
import type { ChunkDecoder } from '../../src/estargz/chunk-decoder.js'
import { inlineDecoder } from '../../src/reader/inline-decoder.js'
import type { ChunkRef } from '../../src/estargz/toc-index.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { ChunkReader, type FetchEvent } from '../../src/reader/chunk-reader.js'
import { ChunkFetchError, ChunkVerifyError } from '../../src/reader/errors.js'
import { WorkerChunkDecoder } from '../../src/reader/worker-decoder.js'
import { buildMiniEstargz, type MiniFile } from '../../harness/mini-estargz.js'
import { CountingSource, MultiRangeCountingSource, prng, recordingLogger, sha } from './fixtures.js'

const files: MiniFile[] = [
  { name: 'a/small.txt', data: Buffer.from('tiny file\n') },
  { name: 'a/c4k.bin', data: prng(50_000, 1), chunkSize: 4096 },
  { name: 'a/c64k.bin', data: prng(300_000, 2), chunkSize: 64 * 1024 },
  { name: 'b/odd.bin', data: prng(250_001, 3), chunkSize: 100_000 },
  { name: 'b/whole.bin', data: prng(200_000, 4) },
  { name: 'b/text.txt', data: Buffer.from('lorem ipsum dolor sit amet '.repeat(20_000)), chunkSize: 128 * 1024 },
]
const blob = buildMiniEstargz(files)
const byName = new Map(files.map((f) => [f.name, f.data as Buffer]))

const workerPool = new WorkerChunkDecoder({ syncBelowBytes: 0 })
t.teardown(() => workerPool.close())

const decoders: Array<{ name: string; decoder: ChunkDecoder }> = [
  { name: 'worker pool', decoder: workerPool },
  { name: 'sync-only pool', decoder: new WorkerChunkDecoder({ syncBelowBytes: 1 << 30 }) },
  { name: 'inline', decoder: inlineDecoder },
]

async function setup(opts: { source?: CountingSource; mergeGapBytes?: number; decoder?: ChunkDecoder; cacheBytes?: number; mini?: typeof blob } = {}) {
  const mini = opts.mini ?? blob
  const source = opts.source ?? new CountingSource(mini.blob)
  const er = await EstargzReader.open(source, { tocDigest: mini.tocDigest })
  const openReads = source.reads
  source.requests.length = 0
  const cache = new MemoryCache({ maxBytes: opts.cacheBytes ?? 64 << 20 })
  const { logger, lines } = recordingLogger()
  const events: FetchEvent[] = []
  const reader = new ChunkReader({
    reader: er,
    source,
    cache,
    decoder: opts.decoder ?? workerPool,
    mergeGapBytes: opts.mergeGapBytes ?? 0,
    logger,
    hooks: { onFetch: (e) => events.push(e) },
  })
  return { source, reader, cache, lines, events, er, openReads }
}

/** How many recorded requests overlap each payload member. */
function fetchesPerMember(payloads: readonly ChunkRef[], reqs: ReadonlyArray<{ offset: number; length: number }>): number[] {
  return payloads.map((p) => reqs.filter((r) => r.offset < p.compressedEnd && p.compressedOffset < r.offset + r.length).length)
}

for (const { name, decoder } of decoders) {
  t.test(`byte-exact reads across chunk boundaries (${name})`, async (t) => {
    const { reader } = await setup({ decoder })
    for (const [file, data] of byName) {
      t.same(await reader.read(file, 0, data.length), data, `${file} whole`)
      t.same(await reader.read(file, 0, data.length + 1000), data, `${file} clamped at EOF`)
      t.equal((await reader.read(file, data.length, 10)).length, 0, `${file} at EOF`)
    }
    const c64 = byName.get('a/c64k.bin') as Buffer
    for (const [off, len] of [[65535, 2], [65536, 65536], [1, 200_000], [131071, 1], [299_999, 5]] as const) {
      t.same(await reader.read('a/c64k.bin', off, len), c64.subarray(off, off + len), `c64k [${off}, +${len})`)
    }
    await fc.assert(fc.asyncProperty(
      fc.constantFrom(...byName.keys()), fc.nat(), fc.nat({ max: 150_000 }),
      async (file, o, len) => {
        const data = byName.get(file) as Buffer
        const off = o % (data.length + 1)
        const got = await reader.read(file, off, len)
        return got.equals(data.subarray(off, Math.min(data.length, off + len)))
      },
    ), { numRuns: 60, seed: 42 })
  })
}

t.test('names are normalised and hardlinks resolved; errors for missing and non-regular files', async (t) => {
  const mini = buildMiniEstargz([
    { name: 'd', type: 'dir' },
    { name: 'd/f', data: Buffer.from('content') },
    { name: 'd/h', type: 'hardlink', linkName: 'd/f' },
  ])
  const { reader } = await setup({ mini })
  t.equal((await reader.read('/d/./f', 0, 100)).toString(), 'content')
  t.equal((await reader.read('d/h', 2, 3)).toString(), 'nte')
  await t.rejects(reader.read('d/nope', 0, 1), { code: 'ERR_NOT_FOUND' })
  await t.rejects(reader.read('d', 0, 1), { code: 'ERR_INVALID_ARGUMENT' })
  await t.rejects(reader.read('d/f', -1, 1), { code: 'ERR_INVALID_ARGUMENT' })
})

t.test('N adjacent missing chunks are fetched with one request', async (t) => {
  const { reader, source, events } = await setup()
  const data = byName.get('a/c64k.bin') as Buffer
  t.same(await reader.read('a/c64k.bin', 0, data.length), data)
  const refs = reader.index.chunks('a/c64k.bin')
  t.equal(refs.length, 5)
  t.equal(source.reads, 1, 'one request for five chunks')
  const first = refs[0] as ChunkRef
  const last = refs[refs.length - 1] as ChunkRef
  t.same(source.requests[0], { offset: first.compressedOffset, length: last.compressedEnd - first.compressedOffset, signal: false })
  t.equal(events.length, 1)
  t.equal(events[0]?.chunks, 5)
  t.equal(reader.stats().cacheMisses, 5)
  t.equal(reader.stats().fetchRequests, 1)
  t.equal(reader.stats().bytesFetched, last.compressedEnd - first.compressedOffset)
})

t.test('a cached chunk in the middle: merged across the gap only when the gap is small enough', async (t) => {
  for (const [gap, want] of [[0, 2], [1 << 20, 1]] as const) {
    const { reader, source } = await setup({ mergeGapBytes: gap })
    const refs = reader.index.chunks('a/c64k.bin')
    const mid = refs[2] as ChunkRef
    await reader.read('a/c64k.bin', mid.chunkOffset, 1)
    source.requests.length = 0
    const data = byName.get('a/c64k.bin') as Buffer
    t.same(await reader.read('a/c64k.bin', 0, data.length), data)
    t.equal(source.reads, want, `gap ${gap}: ${want} request(s)`)
  }
})

t.test('separate spans go out as one multi-range request when the source supports it', async (t) => {
  const source = new MultiRangeCountingSource(blob.blob)
  const { reader } = await setup({ source })
  const refs = reader.index.chunks('a/c64k.bin')
  await reader.read('a/c64k.bin', (refs[2] as ChunkRef).chunkOffset, 1)
  const data = byName.get('a/c64k.bin') as Buffer
  t.same(await reader.read('a/c64k.bin', 0, data.length), data)
  t.equal(source.multi.length, 1)
  t.equal(source.multi[0]?.length, 2, 'two ranges in it')
  t.equal(reader.stats().fetchRequests, 2, 'one single + one multi-range request')
})

t.test('16 concurrent readers over the same files: right bytes, each chunk fetched once', async (t) => {
  const { reader, source } = await setup()
  const names = ['a/c4k.bin', 'a/c64k.bin', 'b/odd.bin', 'b/text.txt']
  await Promise.all(Array.from({ length: 16 }, async (_, r) => {
    for (let k = 0; k < names.length; k++) {
      const file = names[(k + r) % names.length] as string
      const data = byName.get(file) as Buffer
      // Each reader walks the file in its own step size, so reads overlap chunks differently.
      const step = 3000 + r * 1777
      const parts: Buffer[] = []
      for (let off = 0; off < data.length; off += step) parts.push(await reader.read(file, off, step))
      t.ok(Buffer.concat(parts).equals(data), `reader ${r} ${file}`)
    }
  }))
  const payloads = allPayloads(reader.index).filter((p) => names.includes(p.name))
  const counts = fetchesPerMember(payloads, source.requests)
  t.same(counts, payloads.map(() => 1), 'every member fetched exactly once')
  t.ok(reader.stats().deduplicated > 0, 'concurrent readers joined in-flight loads')
})

t.test('identical chunks in two files are fetched once (flights and cache keyed by digest)', async (t) => {
  const same = prng(70_000, 9)
  const mini = buildMiniEstargz([{ name: 'x', data: same }, { name: 'y', data: same }])
  const { reader, source } = await setup({ mini })
  const [x, y] = await Promise.all([reader.read('x', 0, 70_000), reader.read('y', 0, 70_000)])
  t.same(x, same)
  t.same(y, same)
  t.equal(source.reads, 1)
})

t.test('a chunk whose bytes do not match its digest: typed error, logged, nothing cached or served', async (t) => {
  const mini = buildMiniEstargz(files, {
    mutateToc: (toc) => {
      const e = toc.entries.find((x) => x.name === 'a/c64k.bin' && x.chunkOffset === 65536)
      if (e) e.chunkDigest = sha(Buffer.from('something else'))
    },
  })
  const { reader, cache, lines } = await setup({ mini })
  const bad = reader.index.chunks('a/c64k.bin')[1] as ChunkRef
  for (let i = 0; i < 2; i++) {
    // Spans chunks 0 and 1; only 1 is bad.
    const err = await reader.read('a/c64k.bin', 60_000, 10_000).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof ChunkVerifyError, 'ChunkVerifyError')
    const v = err as ChunkVerifyError
    t.equal(v.code, 'ERR_CHUNK_DIGEST_MISMATCH')
    t.equal(v.digest, bad.digest)
    t.equal(v.blobOffset, bad.compressedOffset)
    t.equal(v.chunkOffset, 65536)
    t.equal(v.path, 'a/c64k.bin')
    t.match(v.message, /a\/c64k\.bin.*65536/)
  }
  t.equal(cache.peek(bad.digest as string), undefined, 'bad chunk not cached')
  t.equal(reader.stats().verifyFailures, 2, 'fetched and checked again, never served from cache')
  t.ok(lines.some((l) => l.level === 'warn' && l.msg === 'chunk-read-failed' && l.obj.digest === bad.digest && l.obj.blobOffset === bad.compressedOffset))
  // Neighbouring chunks verified in the same span are fine and cached.
  const good = reader.index.chunks('a/c64k.bin')[0] as ChunkRef
  t.ok(cache.peek(good.digest as string))
  t.same(await reader.read('a/c64k.bin', 0, 100), (byName.get('a/c64k.bin') as Buffer).subarray(0, 100))
})

t.test('damaged compressed bytes: typed fetch error with digest and offset, nothing cached', async (t) => {
  const damaged = Buffer.from(blob.blob)
  const { reader: probe } = await setup()
  const ref = probe.index.chunks('b/whole.bin')[0] as ChunkRef
  for (let i = ref.compressedOffset + 20; i < ref.compressedOffset + 60; i++) damaged[i] = (damaged[i] as number) ^ 0x55
  const { reader, cache } = await setup({ source: new CountingSource(damaged) })
  const err = await reader.read('b/whole.bin', 0, 10).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof ChunkFetchError || err instanceof ChunkVerifyError, 'typed error')
  t.equal((err as ChunkFetchError).digest, ref.digest)
  t.equal((err as ChunkFetchError).blobOffset, ref.compressedOffset)
  t.equal(cache.stats().entries, 0)
})

t.test('a source that fails, then recovers: error first, then the right bytes', async (t) => {
  const source = new CountingSource(blob.blob)
  const { reader, cache, lines } = await setup({ source })
  source.failNext = 1
  const ref = reader.index.chunks('b/odd.bin')[1] as ChunkRef
  const err = await reader.read('b/odd.bin', 100_000, 50).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof ChunkFetchError)
  t.equal((err as ChunkFetchError).code, 'ERR_FETCH')
  t.equal((err as ChunkFetchError).digest, ref.digest)
  t.equal((err as ChunkFetchError).blobOffset, ref.compressedOffset)
  t.match((err as Error).message, /injected failure/)
  t.equal(cache.stats().entries, 0)
  t.equal(reader.inFlight, 0, 'failed flight removed')
  t.ok(lines.some((l) => l.msg === 'chunk-read-failed'))
  t.same(await reader.read('b/odd.bin', 100_000, 50), (byName.get('b/odd.bin') as Buffer).subarray(100_000, 100_050))
  t.equal(source.reads, 2)
  t.equal(reader.stats().fetchFailures, 1)
})

t.test('concurrent readers all see the failure of a shared fetch, and all recover after', async (t) => {
  const source = new CountingSource(blob.blob)
  const { reader } = await setup({ source })
  source.failNext = 1
  source.hold()
  const reads = Array.from({ length: 8 }, () => reader.read('b/whole.bin', 0, 1000).then(() => 'ok', (e: ChunkFetchError) => e.code))
  await new Promise((r) => setImmediate(r))
  t.equal(source.waiting, 1, 'one fetch for eight readers')
  source.release()
  t.same(await Promise.all(reads), Array(8).fill('ERR_FETCH'))
  t.same(await reader.read('b/whole.bin', 0, 1000), (byName.get('b/whole.bin') as Buffer).subarray(0, 1000))
})

t.test('cache hits are served without fetching; counters and the abort signal', async (t) => {
  const { reader, source } = await setup()
  const data = byName.get('b/text.txt') as Buffer
  await reader.read('b/text.txt', 0, data.length)
  const before = source.reads
  t.same(await reader.read('b/text.txt', 1000, 300_000), data.subarray(1000, 301_000))
  t.equal(source.reads, before, 'no new fetch')
  t.ok(reader.stats().cacheHits >= 3)
  const ac = new AbortController()
  source.hold()
  const p = reader.read('a/c4k.bin', 0, 10, ac.signal)
  ac.abort(new Error('interrupted'))
  await t.rejects(p, /interrupted/)
  source.release()
  await reader.settled()
  t.same(await reader.read('a/c4k.bin', 0, 10), (byName.get('a/c4k.bin') as Buffer).subarray(0, 10), 'the shared fetch went on and was cached')
  t.equal(source.reads, before + 1)
})

t.test('legacy chunks without digests: verified by the file digest, refused without one unless allowed', async (t) => {
  const data = prng(10_000, 5)
  const withFileDigest = buildMiniEstargz([{ name: 'f', data, chunkSize: 4096 }], {
    legacy: true,
    mutateToc: (toc) => { for (const e of toc.entries) delete e.chunkDigest },
  })
  const a = await setup({ mini: withFileDigest })
  t.same(await a.reader.read('f', 4000, 200), data.subarray(4000, 4200), 'served after the whole-file check')
  t.same(await a.reader.read('f', 0, 10_000), data)
  t.equal(a.reader.inFlight, 0)

  const lying = buildMiniEstargz([{ name: 'f', data, chunkSize: 4096 }], {
    legacy: true,
    mutateToc: (toc) => { for (const e of toc.entries) delete e.chunkDigest; toc.entries[0]!.digest = 'sha256:' + 'c'.repeat(64) },
  })
  const b = await setup({ mini: lying })
  await t.rejects(b.reader.read('f', 0, 10), { code: 'ERR_CHUNK_DIGEST_MISMATCH' })
  t.equal(b.cache.stats().entries, 0, 'nothing cached')

  const bare = buildMiniEstargz([{ name: 'f', data, chunkSize: 4096 }], {
    legacy: true,
    mutateToc: (toc) => { for (const e of toc.entries) { delete e.chunkDigest; delete e.digest } },
  })
  const { reader } = await setup({ mini: bare })
  await t.rejects(reader.read('f', 0, 10), { code: 'ERR_FAILED_PRECONDITION' })
  t.equal(reader.inFlight, 0)
})

t.test('sequential readers get read-ahead; random readers do not', async (t) => {
  for (const readaheadBytes of [64 * 1024, 0]) {
    const source = new CountingSource(blob.blob)
    const er = await EstargzReader.open(source, { tocDigest: blob.tocDigest })
    source.requests.length = 0
    const reader = new ChunkReader({ reader: er, source, cache: new MemoryCache({ maxBytes: 1 << 24 }), decoder: workerPool, readaheadBytes })
    const data = byName.get('a/c64k.bin') as Buffer
    await reader.read('a/c64k.bin', 8192, 4096) // not sequential: no read-ahead yet
    await reader.settled()
    t.equal(source.reads, 1)
    t.same(await reader.read('a/c64k.bin', 12288, 4096), data.subarray(12288, 16384))
    await reader.settled()
    t.equal(source.reads, readaheadBytes > 0 ? 2 : 1, readaheadBytes > 0 ? 'next chunk loaded ahead' : 'nothing ahead when disabled')
    t.same(await reader.read('a/c64k.bin', 65536, 100), data.subarray(65536, 65636))
    await reader.settled()
    t.equal(source.reads, 2, 'the next chunk is fetched once either way')
  }
})
