/**
 * The real lazy filesystem (registry → resolver → FUSE) against the FileSystem contract, and
 * what a failed mount leaves behind: no running fetch, no open blob, no worker, no mount.
 * Real docker-registry (behind a logging proxy), real FUSE.
 */
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { gzipSync } from 'node:zlib'
import { pino } from 'pino'
import { FileRangeSource } from '../../src/estargz/file-source.js'
import { EstargzReader } from '../../src/estargz/reader.js'
import { openChunkCache } from '../../src/cache/chunk-cache.js'
import { LazyFileSystem } from '../../src/fs/lazy-filesystem.js'
import { isMounted } from '../../src/fuse/unmount.js'
import { NO_METRICS, type MetricsHooks } from '../../src/metrics/hooks.js'
import { RegistryClient } from '../../src/registry/client.js'
import type { RemoteLayerInfo } from '../../src/snapshot/filesystem.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { startRegistry } from '../../harness/registry.js'
import type { NodeSpec } from '../../harness/tree.js'
import { blobFromTree, scratch } from '../../harness/fuse-fixtures.js'
import { dirMaker, fileSystemContract } from '../snapshot/filesystem-contract.js'

const M = 1_700_000_000
const tree: NodeSpec[] = [
  { type: 'file', path: 'etc/os-release', content: 'ID=contract\n', mtime: M },
  { type: 'file', path: 'data/big.bin', content: createHash('sha512').update('x').digest('hex').repeat(4000), mtime: M },
]

function sha(b: Buffer): string { return 'sha256:' + createHash('sha256').update(b).digest('hex') }

// ---- one registry + image for the file ----------------------------------------------------
const work = await scratch(t, 'sgd-lazyfs-')
const reg = await startRegistry()
t.teardown(() => reg.close())
const proxy = await startFaultProxy(reg.url)
t.teardown(() => proxy.close())
const built = await blobFromTree(join(work, 'layer'), tree)
const esgz = await readFile(built.blob)
const tarBytes = await readFile(built.tar)
const plain = gzipSync(tarBytes)
const tocDigest = await (async () => {
  const src = await FileRangeSource.open(built.blob)
  try { return (await EstargzReader.open(src)).tocDigest } finally { await src.close() }
})()
{
  const pusher = new RegistryClient({ plainHttp: true })
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(tarBytes), sha(tarBytes)] } }))
  const mt = 'application/vnd.oci.image.layer.v1.tar+gzip'
  await pusher.pushImage(`${reg.host}/test/lazyfs:1`, config, [{ data: esgz, mediaType: mt }, { data: plain, mediaType: mt }])
  await pusher.close()
}
const imageRef = `${proxy.host}/test/lazyfs:1`
const good: RemoteLayerInfo = { imageRef, layerDigest: sha(esgz), tocDigest, labels: {} }
const bad: RemoteLayerInfo = { imageRef, layerDigest: sha(plain), labels: {} }

interface Recorded { mounted: number; hits: string[]; misses: number; fetched: number }

function recorder(): { hooks: MetricsHooks; rec: Recorded } {
  const rec: Recorded = { mounted: 0, hits: [], misses: 0, fetched: 0 }
  return {
    rec,
    hooks: {
      ...NO_METRICS,
      mountedLayers: (d) => { rec.mounted += d },
      cacheHit: (tier) => { rec.hits.push(tier) },
      cacheMiss: () => { rec.misses++ },
      fetchedBytes: (n) => { rec.fetched += n },
    },
  }
}

/** A pino logger that calls `on` with each message (synchronously, as pino writes). */
function tapLogger(on: (msg: string) => void): pino.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) on((JSON.parse(l) as { msg: string }).msg)
      cb()
    },
  })
  return pino({ level: 'info' }, sink)
}

async function lazyFs(t: Test, opts: { log?: pino.Logger; metrics?: MetricsHooks } = {}): Promise<LazyFileSystem> {
  const client = new RegistryClient({ plainHttp: true })
  const fs = new LazyFileSystem({
    client,
    cache: await openChunkCache(undefined, { ...(opts.metrics ? { observer: opts.metrics } : {}) }),
    log: opts.log ?? pino({ level: 'silent' }),
    metrics: opts.metrics ?? NO_METRICS,
    noPrefetch: false,
    prefetchTimeoutSec: 10,
    noBackgroundFetch: false,
    backgroundConcurrency: 2,
    backgroundUnitBytes: 1 << 20,
    requireTocDigest: true,
    allowUnverified: false,
    attrTimeoutSec: 1,
    entryTimeoutSec: 1,
    checkIntervalMs: 0,
    layerTtlMs: 0,
  })
  t.teardown(async () => { await fs.close(); await client.close() })
  return fs
}

const threads = async (): Promise<number> => (await readdir('/proc/self/task')).length
async function settledThreads(): Promise<number> {
  let last = await threads()
  for (let i = 0; i < 20; i++) {
    await sleep(250)
    const now = await threads()
    if (now === last) return now
    last = now
  }
  return last
}
const blobGets = (): number => proxy.log.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length

// ---- the contract ---------------------------------------------------------------------------
let n = 0
fileSystemContract(t, 'lazy (FUSE + registry)', async (t) => {
  const root = join(work, `contract-${n++}`)
  return { fs: await lazyFs(t), good, bad, mountedAt: isMounted, dir: dirMaker(root) }
})

// ---- what a failed mount leaves -------------------------------------------------------------
t.test('a failed mount leaves no running fetch, open blob, worker or mount', async (t) => {
  const mk = dirMaker(join(work, 'failed'))
  // Warm up: the first mount of the process starts libuv and FUSE machinery that stays.
  {
    const fs = await lazyFs(t)
    const mp = await mk('warm')
    await fs.mount(mp, good)
    await fs.unmount(mp)
    await fs.close()
  }
  const baseline = await threads()

  const cases: Array<{ name: string; expect: RegExp; run: (fs: LazyFileSystem, ac: AbortController) => Promise<unknown> }> = [
    {
      name: 'the FUSE mount fails (mountpoint is a file)',
      expect: /./,
      run: async (fs) => {
        const file = join(work, 'failed', 'not-a-dir')
        await writeFile(file, '')
        return fs.mount(file, good)
      },
    },
    {
      name: 'the mount is aborted after the kernel mount was made',
      expect: /^aborted once mounted$/,
      run: async (fs, ac) => fs.mount(await mk('aborted-late'), good, ac.signal),
    },
    {
      name: 'the TOC does not verify',
      expect: /TOC digest mismatch/,
      run: async (fs) => fs.mount(await mk('bad-toc'), { ...good, tocDigest: sha(Buffer.from('wrong')) }),
    },
    {
      name: 'the layer is not eStargz',
      expect: /not an eStargz blob|too small to be eStargz/,
      run: async (fs) => fs.mount(await mk('not-estargz'), { ...bad, tocDigest: sha(Buffer.from('x')) }),
    },
  ]
  for (const c of cases) {
    const ac = new AbortController()
    // Abort the moment the kernel mount is up (LayerMount logs it synchronously).
    const log = tapLogger((msg) => { if (msg === 'layer-mounted') ac.abort(new Error('aborted once mounted')) })
    const { hooks, rec } = recorder()
    const fs = await lazyFs(t, { log, metrics: hooks })
    const err = await c.run(fs, ac).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof Error, `${c.name}: mount rejected`)
    t.match((err as Error).message, c.expect, `${c.name}: for that reason`)
    t.same(fs.resolverStats(), { layers: 0, refs: 0, openBlobs: 0, started: 0 }, `${c.name}: no layer, reference, open blob or started fetch`)
    t.equal(rec.mounted, 0, `${c.name}: mountedLayers gauge unchanged`)
    const gets = blobGets()
    // Past the background grace (2 s): a layer left running would have fetched by now.
    await sleep(2500)
    t.equal(blobGets(), gets, `${c.name}: no fetch after the failure`)
    // The decode pool is the filesystem's (started with it), so threads are counted once it is
    // closed: a FUSE loop or worker left by the failed mount would still be there.
    await fs.close()
    t.equal(await settledThreads(), baseline, `${c.name}: no thread (FUSE loop, decode worker) left`)
  }
})

t.test('a mounted layer starts fetching once mounted; unmount releases everything', async (t) => {
  const { hooks, rec } = recorder()
  const fs = await lazyFs(t, { metrics: hooks })
  const mp = await dirMaker(join(work, 'ok'))('mp')
  await fs.mount(mp, good)
  t.same(fs.resolverStats(), { layers: 1, refs: 1, openBlobs: 1, started: 1 })
  t.equal(rec.mounted, 1, 'gauge raised by the filesystem')
  t.equal(await readFile(join(mp, 'etc/os-release'), 'utf8'), 'ID=contract\n')
  t.ok(rec.misses > 0, 'the first read missed the cache')
  // The same layer at a second mountpoint: no kernel page cache there, so the read reaches the
  // layer and is answered by the chunk cache.
  const mp2 = await dirMaker(join(work, 'ok'))('mp2')
  await fs.mount(mp2, good)
  t.same(fs.resolverStats(), { layers: 1, refs: 2, openBlobs: 1, started: 1 }, 'one layer, one blob, two references')
  t.equal(await readFile(join(mp2, 'etc/os-release'), 'utf8'), 'ID=contract\n')
  t.ok(rec.hits.length > 0 && rec.hits.every((h) => h === 'memory'), 'cache hits are raised by the cache, with their tier')
  await fs.unmount(mp2)
  await fs.unmount(mp)
  t.equal(rec.mounted, 0)
  await fs.unmount(mp)
  await fs.unmount(await dirMaker(join(work, 'ok'))('never'))
  t.equal(rec.mounted, 0, 'unmount of what is not mounted does not move the gauge')
  t.same(fs.resolverStats(), { layers: 0, refs: 0, openBlobs: 0, started: 0 }, 'TTL 0: released at once')
})

t.test('issues #12/#13: the filesystem builds a layer\'s compact index in its TOC build workers', async (t) => {
  const opened: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) { const o = JSON.parse(l) as Record<string, unknown>; if (o.msg === 'layer-opened') opened.push(o) }
      cb()
    },
  })
  // The compact index is opt-in ($STARGZ_INDEX=compact; see defaultIndexKind in src/layer/layer.ts).
  const prev = process.env.STARGZ_INDEX
  process.env.STARGZ_INDEX = 'compact'
  t.teardown(() => { if (prev === undefined) delete process.env.STARGZ_INDEX; else process.env.STARGZ_INDEX = prev })
  const fs = await lazyFs(t, { log: pino({ level: 'info' }, sink) })
  const mp = await dirMaker(join(work, 'built-by'))('mp')
  await fs.mount(mp, good)
  t.equal(await readFile(join(mp, 'etc/os-release'), 'utf8'), 'ID=contract\n')
  t.equal(opened.length, 1)
  t.match(opened[0], { index: 'compact', from: 'registry', built: 'worker' }, 'built off the main thread')
  await fs.unmount(mp)
})
