/**
 * Restore without the registry (issue #11): the lazy filesystem persists each verified layer's
 * descriptor and TOC (src/layer/layer-store.ts) beside the cache; a new filesystem (a restarted
 * daemon) mounts the layer from that record with no registry request, serves cached files with
 * the registry answering 503 to everything, and serves uncached files once it is back — no
 * remount. A damaged record is refused and re-fetched, never served. Real docker-registry
 * (behind the fault proxy), real FUSE, a disk chunk cache shared by both filesystems.
 */
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { FileRangeSource } from '../../src/estargz/file-source.js'
import { EstargzReader } from '../../src/estargz/reader.js'
import { openChunkCache } from '../../src/cache/chunk-cache.js'
import { TocError } from '../../src/errors.js'
import { LazyFileSystem } from '../../src/fs/lazy-filesystem.js'
import { LayerStore, parseRecord } from '../../src/layer/layer-store.js'
import { NO_METRICS } from '../../src/metrics/hooks.js'
import { RegistryClient } from '../../src/registry/client.js'
import type { RemoteLayerInfo } from '../../src/snapshot/filesystem.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { startRegistry } from '../../harness/registry.js'
import type { NodeSpec } from '../../harness/tree.js'
import { blobFromTree, scratch } from '../../harness/fuse-fixtures.js'

const M = 1_700_000_000
const big = Buffer.from(createHash('sha512').update('cold').digest('hex').repeat(20_000))
const tree: NodeSpec[] = [
  { type: 'file', path: 'etc/os-release', content: 'ID=restore\n', mtime: M },
  { type: 'file', path: 'data/cold.bin', content: big.toString('latin1'), mtime: M },
]

function sha(b: Buffer): string { return 'sha256:' + createHash('sha256').update(b).digest('hex') }

const work = await scratch(t, 'sgd-layerstore-')
const reg = await startRegistry()
t.teardown(() => reg.close())
const proxy = await startFaultProxy(reg.url)
t.teardown(() => proxy.close())
const built = await blobFromTree(join(work, 'layer'), tree, { chunkSize: 64 * 1024 })
const esgz = await readFile(built.blob)
const tarBytes = await readFile(built.tar)
const tocDigest = await (async () => {
  const src = await FileRangeSource.open(built.blob)
  try { return (await EstargzReader.open(src)).tocDigest } finally { await src.close() }
})()
{
  const pusher = new RegistryClient({ plainHttp: true })
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(tarBytes)] } }))
  await pusher.pushImage(`${reg.host}/test/restore:1`, config, [{ data: esgz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }])
  await pusher.close()
}
// Layer records (the TOC's verified JSON) are how the object index is persisted; the compact index
// (the default) is persisted by src/index/index-store.ts instead, covered by test/index/index-store
// and, through the daemon with the registry down, by test/restart/registry-stopped.test.ts.
process.env.STARGZ_INDEX = 'object'
const layer: RemoteLayerInfo = { imageRef: `${proxy.host}/test/restore:1`, layerDigest: sha(esgz), tocDigest, labels: {} }
const blobGets = (): number => proxy.log.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length
const registryDown = (): void => { proxy.faults.statusBurst = { status: 503, count: 1_000_000 } }
const registryUp = (): void => { proxy.faults.statusBurst = undefined }

/** Messages logged, for the refusal checks. */
function tapLogger(msgs: string[]): pino.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) msgs.push((JSON.parse(l) as { msg: string; err?: string }).msg)
      cb()
    },
  })
  return pino({ level: 'info' }, sink)
}

/** A "daemon": a lazy filesystem over the state dir (record store + disk cache), as the factory builds it. */
async function daemonFs(t: Test, state: string, log: pino.Logger = pino({ level: 'silent' })): Promise<{ fs: LazyFileSystem; close(): Promise<void> }> {
  // No retries at all: a 503 from the "down" registry fails the read at once (by default a
  // retryable status is retried until the request deadline, issue #17).
  const client = new RegistryClient({ plainHttp: true, transport: { maxRetries: 0, retryStatusUntilDeadline: false } })
  const fs = new LazyFileSystem({
    client,
    cache: await openChunkCache(join(state, 'cache')),
    layerStore: await LayerStore.open(join(state, 'layers')),
    log,
    metrics: NO_METRICS,
    noPrefetch: true,
    prefetchTimeoutSec: 10,
    noBackgroundFetch: true,
    backgroundConcurrency: 2,
    backgroundUnitBytes: 1 << 20,
    requireTocDigest: true,
    allowUnverified: false,
    attrTimeoutSec: 1,
    entryTimeoutSec: 1,
    checkIntervalMs: 60_000,
    layerTtlMs: 0,
  })
  let closed = false
  const close = async (): Promise<void> => { if (closed) return; closed = true; await fs.close(); await client.close() }
  t.teardown(close)
  return { fs, close }
}

const recordFile = (state: string): string => join(state, 'layers', `${tocDigest.slice('sha256:'.length)}.layer`)

async function firstRun(t: Test, name: string): Promise<{ state: string; mnt: string }> {
  const state = join(work, name)
  const mnt = join(state, 'mnt')
  await mkdir(mnt, { recursive: true })
  const a = await daemonFs(t, state)
  await a.fs.mount(mnt, layer)
  t.equal(await readFile(join(mnt, 'etc/os-release'), 'utf8'), 'ID=restore\n', 'first run reads through the registry')
  await a.close() // waits for the record write
  return { state, mnt }
}

t.test('restart with the registry down: mounted from the record, cached reads work, uncached ones once it is back', async (t) => {
  registryUp()
  const { state, mnt } = await firstRun(t, 'down')
  t.same(await readdir(join(state, 'layers')), [`${tocDigest.slice(7)}.layer`], 'one record, keyed by TOC digest, no temp file left')

  registryDown()
  proxy.clearLog()
  const b = await daemonFs(t, state)
  await b.fs.mount(mnt, layer)
  t.equal(blobGets(), 0, 'the mount sent no blob request')
  t.equal(await readFile(join(mnt, 'etc/os-release'), 'utf8'), 'ID=restore\n', 'a cached file reads with the registry down')
  await t.rejects(readFile(join(mnt, 'data/cold.bin')), 'an uncached file fails while the registry is down')
  registryUp()
  t.ok((await readFile(join(mnt, 'data/cold.bin'))).equals(big), 'the uncached file reads right once the registry is back, same mount')
  await b.close()
})

t.test('a damaged record is refused and re-fetched from the registry', async (t) => {
  registryUp()
  const { state, mnt } = await firstRun(t, 'damaged')
  const good = await readFile(recordFile(state))
  const bad = Buffer.from(good)
  bad[bad.length - 10] = (bad[bad.length - 10] as number) ^ 0x20 // one TOC byte
  await writeFile(recordFile(state), bad)
  const msgs: string[] = []
  proxy.clearLog()
  const b = await daemonFs(t, state, tapLogger(msgs))
  await b.fs.mount(mnt, layer)
  t.ok(msgs.includes('layer-record-refused'), 'the refusal is logged')
  t.ok(blobGets() > 0, 'footer and TOC came from the registry again')
  t.equal(await readFile(join(mnt, 'etc/os-release'), 'utf8'), 'ID=restore\n', 'served right')
  await b.close()
  t.ok((await readFile(recordFile(state))).equals(good), 'the record was written again, intact')
})

t.test('a damaged record with the registry down: the mount fails, nothing is served', async (t) => {
  registryUp()
  const { state, mnt } = await firstRun(t, 'damaged-down')
  const good = await readFile(recordFile(state))
  await writeFile(recordFile(state), good.subarray(0, good.length - 1)) // truncated
  registryDown()
  const b = await daemonFs(t, state)
  await t.rejects(b.fs.mount(mnt, layer), 'refused record + unreachable registry: the mount fails')
  t.same(await readdir(mnt), [], 'nothing mounted at the mountpoint')
  registryUp()
  await b.close()
})

t.test('parseRecord refuses every kind of damage with a TocError (rule layer-record)', async (t) => {
  registryUp()
  const { state } = await firstRun(t, 'parse')
  const good = await readFile(recordFile(state))
  t.equal(parseRecord(good, tocDigest).blobDigest, layer.layerDigest, 'the intact record parses')
  const nl = good.indexOf(0x0a, good.indexOf(0x0a) + 1)
  const header = JSON.parse(good.toString('utf8', good.indexOf(0x0a) + 1, nl)) as Record<string, unknown>
  const withHeader = (h: Record<string, unknown>): Buffer => Buffer.concat([Buffer.from(`stargzd-layer v1\n${JSON.stringify(h)}\n`), good.subarray(nl + 1)])
  const cases: Array<[string, Buffer, string]> = [
    ['no magic', good.subarray(3), tocDigest],
    ['header not JSON', Buffer.concat([Buffer.from('stargzd-layer v1\n{oops\n'), good.subarray(nl + 1)]), tocDigest],
    ['filed under another digest', good, 'sha256:' + '0'.repeat(64)],
    ['truncated TOC', good.subarray(0, good.length - 5), tocDigest],
    ['TOC length lies', withHeader({ ...header, tocBytes: 3 }), tocDigest],
    ['footer outside the blob', withHeader({ ...header, footer: { kind: 'estargz', size: 51, tocOffset: (header.size as number) + 10 } }), tocDigest],
    ['unknown footer kind', withHeader({ ...header, footer: { kind: 'tarball', size: 51, tocOffset: 0 } }), tocDigest],
    ['bad size', withHeader({ ...header, size: -1 }), tocDigest],
  ]
  for (const [name, bytes, digest] of cases) {
    let err: unknown
    try { parseRecord(bytes, digest) } catch (e) { err = e }
    t.ok(err instanceof TocError && err.rule === 'layer-record', `${name}: ${err instanceof Error ? err.message : 'accepted'}`)
  }
})
