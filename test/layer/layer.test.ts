import t from 'tap'
import { allPayloads, type ChunkRef } from '../../src/estargz/toc-index.js'
import type { TocEntry } from '../../src/estargz/types.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { openLayer, type OpenLayerOptions, type StargzLayer } from '../../src/layer/layer.js'
import { PriorityGate } from '../../src/task/priority-gate.js'
import { WorkerChunkDecoder } from '../../src/reader/worker-decoder.js'
import type { MiniFile } from '../../harness/mini-estargz.js'
import { buildLandmarkBlob, CountingSource, prng, recordingLogger } from '../reader/fixtures.js'

const prioritized: MiniFile[] = [
  { name: 'bin', type: 'dir' },
  { name: 'bin/sh', data: prng(50_000, 11), chunkSize: 16 * 1024 },
  { name: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') },
  { name: 'lib/libc.so', data: prng(120_000, 12), chunkSize: 64 * 1024 },
]
const rest: MiniFile[] = [
  { name: 'usr/share/big.bin', data: prng(600_000, 13), chunkSize: 64 * 1024 },
  { name: 'usr/share/doc.txt', data: Buffer.from('the quick brown fox '.repeat(10_000)), chunkSize: 32 * 1024 },
  { name: 'usr/bin/tool', data: prng(90_000, 14) },
  { name: 'usr/bin/link', type: 'hardlink', linkName: 'usr/bin/tool' },
]
const mini = buildLandmarkBlob(prioritized, rest)
const contents = new Map([...prioritized, ...rest].filter((f) => f.data).map((f) => [f.name, f.data as Buffer]))

const decoder = new WorkerChunkDecoder()
t.teardown(() => decoder.close())

const ticks = async (n = 10): Promise<void> => { for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r)) }

interface Teardown { teardown(fn: () => unknown): void }

async function open(t: Teardown, over: Partial<OpenLayerOptions> = {}, source = new CountingSource(mini.blob)) {
  const { logger, lines } = recordingLogger()
  const layer = await openLayer({
    digest: 'sha256:' + 'ab'.repeat(32),
    source,
    tocDigest: mini.tocDigest,
    cache: new MemoryCache({ maxBytes: 64 << 20 }),
    decoder,
    gate: new PriorityGate({ graceMs: 0 }),
    logger,
    backgroundUnitBytes: 64 * 1024,
    ...over,
  })
  t.teardown(() => layer.evict())
  layer.start() // as mountLayer does once the FUSE mount is up
  const openRequests = source.requests.splice(0)
  return { layer, source, lines, openRequests }
}

function landmarkOffset(layer: StargzLayer): number {
  return layer.index.landmarkOffset as number
}

function fetchesPerMember(payloads: readonly ChunkRef[], reqs: ReadonlyArray<{ offset: number; length: number }>): number[] {
  return payloads.map((p) => reqs.filter((r) => r.offset < p.compressedEnd && p.compressedOffset < r.offset + r.length).length)
}

async function readAll(layer: StargzLayer, name: string): Promise<Buffer> {
  return layer.read(name, 0, (contents.get(name) as Buffer).length + 10)
}

t.test('prefetch fetches exactly [0, landmark offset) in one request; prioritized files then need no fetch', async (t) => {
  const { layer, source, lines } = await open(t, { noBackgroundFetch: true })
  const result = await layer.prefetchDone
  const end = landmarkOffset(layer)
  t.equal(result.status, 'done')
  t.same(source.requests, [{ offset: 0, length: end, signal: true }])
  for (const f of prioritized) if (f.data) t.same(await readAll(layer, f.name), f.data, f.name)
  t.equal(source.reads, 1, 'no fetch for prioritized files')
  t.same(await readAll(layer, 'usr/bin/tool'), contents.get('usr/bin/tool'))
  t.equal(source.reads, 2, 'other files are fetched on demand')
  t.ok(lines.some((l) => l.msg === 'prefetch-done' && l.obj.component === 'layer' && l.obj.digest === layer.digest && l.obj.bytes === end))
  const s = layer.state()
  const tool = layer.index.chunks('usr/bin/tool')[0] as ChunkRef
  t.equal(s.fetchedSize, end + (tool.compressedEnd - tool.compressedOffset) + (mini.blob.length - mini.tocOffset))
})

t.test('reads at mount join the prefetch instead of fetching on their own', async (t) => {
  const source = new CountingSource(mini.blob)
  const { logger } = recordingLogger()
  // Hold fetches only after the TOC is loaded: wrap read to start holding on the first payload read.
  const origRead = source.read.bind(source)
  source.read = (offset, length, signal) => {
    if (offset + length <= mini.tocOffset) source.hold()
    return origRead(offset, length, signal)
  }
  const { layer } = await open(t, { noBackgroundFetch: true, logger }, source)
  const reads = Promise.all(prioritized.filter((f) => f.data).map((f) => readAll(layer, f.name)))
  await ticks()
  t.equal(source.waiting, 1, 'only the prefetch request is out')
  source.release()
  t.same(await reads, prioritized.filter((f) => f.data).map((f) => f.data))
  t.equal(source.reads, 1)
})

t.test('a prefetch that times out: readers that joined it fetch for themselves', async (t) => {
  const source = new CountingSource(mini.blob)
  const origRead = source.read.bind(source)
  let payloadReads = 0
  source.read = (offset, length, signal) => {
    // Hold the prefetch (it times out) and the retry (released below); not later reads.
    if (offset + length <= mini.tocOffset && payloadReads++ < 2) source.hold()
    return origRead(offset, length, signal)
  }
  const { layer, lines } = await open(t, { noBackgroundFetch: true, prefetchTimeoutSec: 0.05 }, source)
  const read = readAll(layer, 'bin/sh')
  const result = await layer.prefetchDone
  t.equal(result.status, 'failed')
  t.ok(lines.some((l) => l.level === 'warn' && l.msg === 'prefetch-failed'))
  await ticks()
  t.equal(source.requests.length, 2, 'the joined read retried on its own, in one request')
  source.release()
  t.same(await read, contents.get('bin/sh'), 'and succeeded')
  t.equal(source.requests.length, 2)
  t.equal(source.requests[0]?.offset, 0)
})

t.test('background fetch completes the layer, each member fetched once, in big units', async (t) => {
  const { layer, source, lines } = await open(t, { backgroundUnitBytes: 128 * 1024 })
  await layer.prefetchDone
  await layer.backgroundDone
  const s = layer.state()
  t.equal(s.fetchedSize, s.size)
  t.equal(s.fetchedPercent, 100)
  t.equal(s.size, mini.blob.length)
  t.same(fetchesPerMember(allPayloads(layer.index), source.requests), allPayloads(layer.index).map(() => 1), 'no member fetched twice')
  const bg = source.requests.slice(1)
  t.ok(bg.length >= 2)
  for (const r of bg.slice(0, -1)) t.ok(r.length >= 128 * 1024, `background request of ${r.length} bytes is a full unit`)
  const n = source.reads
  for (const name of contents.keys()) t.same(await readAll(layer, name), contents.get(name), name)
  t.equal(source.reads, n, 'everything served locally afterwards')
  t.ok(lines.some((l) => l.msg === 'background-fetch-done'))
  t.equal(layer.stats().backgroundDone, true)
})

t.test('background fetch waits while on-demand reads are in flight anywhere on the gate', async (t) => {
  const gate = new PriorityGate({ graceMs: 0 })
  const endOther = gate.beginPriority() // an on-demand read of another layer
  const { layer, source } = await open(t, { gate, noPrefetch: true })
  await ticks(20)
  t.equal(source.reads, 0, 'no background request while a read is in flight')
  t.same(await readAll(layer, 'usr/bin/tool'), contents.get('usr/bin/tool'))
  await ticks(20)
  t.equal(source.reads, 1, 'only the on-demand fetch')
  endOther()
  await layer.backgroundDone
  t.equal(layer.state().fetchedPercent, 100)
})

t.test('an on-demand read preempts a background unit in flight, which is retried after', async (t) => {
  const gate = new PriorityGate({ graceMs: 0 })
  const source = new CountingSource(mini.blob)
  const { layer } = await open(t, { gate, noPrefetch: true, backgroundUnitBytes: 1 << 30 }, source)
  source.hold()
  await ticks(20)
  t.equal(source.waiting, 1, 'the single background unit is in flight')
  const read = readAll(layer, 'usr/share/doc.txt')
  await ticks(20)
  t.equal(gate.stats.preemptions, 1)
  source.release()
  t.same(await read, contents.get('usr/share/doc.txt'))
  await layer.backgroundDone
  t.equal(layer.state().fetchedPercent, 100)
  t.ok(source.reads >= 3, 'aborted unit, on-demand read, retried unit')
})

t.test('state: TOC counted at open, each member counted once', async (t) => {
  const { layer, source } = await open(t, { noPrefetch: true, noBackgroundFetch: true })
  const base = mini.blob.length - mini.tocOffset
  t.same(layer.state(), { digest: layer.digest, size: mini.blob.length, fetchedSize: base, fetchedPercent: (base / mini.blob.length) * 100 })
  await layer.read('usr/share/big.bin', 70_000, 10)
  const ref = layer.index.chunks('usr/share/big.bin')[1] as ChunkRef
  const one = base + ref.compressedEnd - ref.compressedOffset
  t.equal(layer.state().fetchedSize, one)
  await layer.read('usr/share/big.bin', 70_000, 10)
  await layer.read('usr/share/big.bin', 66_000, 100)
  t.equal(layer.state().fetchedSize, one, 'cache hits on the same member add nothing')
  t.equal(source.reads, 1)
  t.equal(await layer.prefetchDone.then((r) => r.reason), 'no_prefetch')
})

t.test('disabled prefetch and background fetch do nothing', async (t) => {
  const { layer, source } = await open(t, { noPrefetch: true, noBackgroundFetch: true })
  await layer.prefetchDone
  await layer.backgroundDone
  await ticks(20)
  t.equal(source.reads, 0)
  t.equal(layer.stats().prefetch?.status, 'skipped')
  t.equal(layer.stats().backgroundDone, false)
})

t.test('no landmark: no prefetch, background still runs', async (t) => {
  const { buildMiniEstargz } = await import('../../harness/mini-estargz.js')
  const plain = buildMiniEstargz(rest)
  const source = new CountingSource(plain.blob)
  const { layer } = await open(t, { tocDigest: plain.tocDigest }, source)
  t.equal((await layer.prefetchDone).reason, 'no landmark')
  await layer.backgroundDone
  t.equal(layer.state().fetchedPercent, 100)
})

t.test('first-access hook: once per file, in access order, hardlinks as their target', async (t) => {
  const seen: string[] = []
  const { layer } = await open(t, { noPrefetch: true, noBackgroundFetch: true, onFirstAccess: (e) => seen.push(e.name) })
  await layer.read('etc/passwd', 0, 4)
  await layer.read('bin/sh', 0, 4)
  await layer.read('etc/passwd', 4, 4)
  layer.noteAccess(layer.index.entry('usr/share/doc.txt') as TocEntry) // FUSE open
  await layer.read('usr/share/doc.txt', 0, 1)
  await layer.read('usr/bin/link', 0, 1)
  await layer.read('usr/bin/tool', 0, 1)
  t.same(seen, ['etc/passwd', 'bin/sh', 'usr/share/doc.txt', 'usr/bin/tool'])
})

t.test('reference counting: close drops a reference, the last one releases; evict is immediate', async (t) => {
  const { layer, source, lines } = await open(t, { noPrefetch: true, noBackgroundFetch: true })
  layer.acquire()
  await layer.close()
  t.same(await layer.read('etc/passwd', 0, 4), Buffer.from('root'), 'still open with one reference left')
  t.equal(source.closed, 0)
  await layer.close()
  t.equal(source.closed, 1, 'source closed with the last reference')
  await t.rejects(layer.read('etc/passwd', 0, 4), { code: 'ERR_FAILED_PRECONDITION' })
  t.throws(() => layer.acquire(), { code: 'ERR_FAILED_PRECONDITION' })
  await layer.close()
  t.equal(source.closed, 1, 'close twice is safe')
  t.ok(lines.some((l) => l.msg === 'layer-closed'))

  const { layer: other, source: src2 } = await open(t, { noPrefetch: true })
  other.acquire()
  other.acquire()
  await other.evict()
  t.equal(src2.closed, 1)
  t.equal(other.closed, true)
})

t.test('closing stops a background fetch in progress', async (t) => {
  const source = new CountingSource(mini.blob)
  const { layer } = await open(t, { noPrefetch: true, backgroundUnitBytes: 32 * 1024 }, source)
  source.hold()
  await ticks(20)
  t.equal(source.waiting, 1)
  const closing = layer.close()
  await closing
  t.ok(layer.state().fetchedPercent < 100)
  t.equal(source.closed, 1)
  source.release()
})

t.test('a TOC that does not match tocDigest fails openLayer', async (t) => {
  await t.rejects(openLayer({ digest: 'sha256:x', source: new CountingSource(mini.blob), tocDigest: 'sha256:' + '0'.repeat(64), cache: new MemoryCache({ maxBytes: 1000 }) }), { code: 'ERR_TOC_DIGEST_MISMATCH' })
})
