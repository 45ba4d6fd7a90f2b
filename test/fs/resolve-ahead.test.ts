/**
 * Resolve-ahead (issue #13): the first remote Prepare of an image resolves every other layer it
 * names (footer + TOC fetched and parsed), so their own Prepares fetch nothing more to mount; a
 * TOC loaded ahead is still checked against the layer's toc.digest when its Prepare arrives.
 * Real docker-registry behind a logging proxy, real FUSE.
 */
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pino } from 'pino'
import { FileRangeSource } from '../../src/estargz/file-source.js'
import { EstargzReader } from '../../src/estargz/reader.js'
import { openChunkCache } from '../../src/cache/chunk-cache.js'
import { LazyFileSystem } from '../../src/fs/lazy-filesystem.js'
import { NO_METRICS } from '../../src/metrics/hooks.js'
import { RegistryClient } from '../../src/registry/client.js'
import type { RemoteLayerInfo } from '../../src/snapshot/filesystem.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { startRegistry } from '../../harness/registry.js'
import { blobFromTree, scratch } from '../../harness/fuse-fixtures.js'
import { dirMaker } from '../snapshot/filesystem-contract.js'

const M = 1_700_000_000
function sha(b: Buffer): string { return 'sha256:' + createHash('sha256').update(b).digest('hex') }

const work = await scratch(t, 'sgd-ahead-')
const reg = await startRegistry()
t.teardown(() => reg.close())
const proxy = await startFaultProxy(reg.url)
t.teardown(() => proxy.close())

async function layer(name: string, content: string): Promise<{ blob: Buffer; tar: Buffer; tocDigest: string }> {
  const built = await blobFromTree(join(work, name), [{ type: 'file', path: `${name}/file.txt`, content, mtime: M }])
  const src = await FileRangeSource.open(built.blob)
  try {
    return { blob: await readFile(built.blob), tar: await readFile(built.tar), tocDigest: (await EstargzReader.open(src)).tocDigest }
  } finally { await src.close() }
}
const layers = [await layer('base', 'base layer\n'), await layer('app', 'app layer\n'), await layer('top', 'top layer\n')]
{
  const pusher = new RegistryClient({ plainHttp: true })
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => sha(l.tar)) } }))
  await pusher.pushImage(`${reg.host}/test/ahead:1`, config, layers.map((l) => ({ data: l.blob, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' })))
  await pusher.close()
}
const imageRef = `${proxy.host}/test/ahead:1`
const digests = layers.map((l) => sha(l.blob))
const info = (i: number, tocDigest = layers[i]?.tocDigest): RemoteLayerInfo => ({
  imageRef, layerDigest: digests[i] as string, imageLayers: digests, labels: {}, ...(tocDigest === undefined ? {} : { tocDigest }),
})
const blobGets = (): number => proxy.log.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length

async function lazyFs(t: Test): Promise<LazyFileSystem> {
  const client = new RegistryClient({ plainHttp: true })
  const fs = new LazyFileSystem({
    client, cache: await openChunkCache(undefined, {}), log: pino({ level: 'silent' }), metrics: NO_METRICS,
    noPrefetch: false, prefetchTimeoutSec: 10, noBackgroundFetch: true, backgroundConcurrency: 2, backgroundUnitBytes: 1 << 20,
    requireTocDigest: true, allowUnverified: false, attrTimeoutSec: 1, entryTimeoutSec: 1, checkIntervalMs: 0, layerTtlMs: 0,
  })
  t.teardown(async () => { await fs.close(); await client.close() })
  return fs
}

/** Wait until the resolver holds `n` layers (the look-aheads run after the first mount returns). */
async function until(fs: LazyFileSystem, n: number): Promise<void> {
  for (let i = 0; i < 200 && fs.resolverStats().layers < n; i++) await new Promise((r) => setTimeout(r, 25))
}

t.test('the first Prepare resolves every layer; the others mount without fetching', async (t) => {
  const fs = await lazyFs(t)
  const mk = dirMaker(join(work, 'ok'))
  const mps = [await mk('0'), await mk('1'), await mk('2')]
  await fs.mount(mps[0] as string, info(0))
  await until(fs, 3)
  t.same(fs.resolverStats(), { layers: 3, refs: 3, openBlobs: 3, started: 1 }, 'all three resolved, only the mounted one started')
  const gets = blobGets()
  await fs.mount(mps[1] as string, info(1))
  await fs.mount(mps[2] as string, info(2))
  t.equal(blobGets(), gets, 'no blob request for the later mounts: footer and TOC were in hand')
  t.same(fs.resolverStats(), { layers: 3, refs: 3, openBlobs: 3, started: 3 }, 'the look-ahead leases were handed over (one reference per mount)')
  t.equal(await readFile(join(mps[2] as string, 'top/file.txt'), 'utf8'), 'top layer\n')
  for (const mp of mps) await fs.unmount(mp)
  t.same(fs.resolverStats(), { layers: 0, refs: 0, openBlobs: 0, started: 0 }, 'everything released')
})

t.test('a TOC resolved ahead is checked against the layer\'s own toc.digest', async (t) => {
  const fs = await lazyFs(t)
  const mk = dirMaker(join(work, 'bad'))
  const mp0 = await mk('0')
  await fs.mount(mp0, info(0))
  await until(fs, 3)
  const err = await fs.mount(await mk('1'), info(1, sha(Buffer.from('not the TOC')))).then(() => undefined, (e: unknown) => e)
  t.match((err as Error | undefined)?.message, /TOC digest mismatch/, 'refused')
  t.equal(fs.resolverStats().layers, 2, 'the mismatching layer was evicted')
  await fs.unmount(mp0)
})

t.test('a layer resolved ahead is not served to a Prepare without a TOC digest (requireTocDigest)', async (t) => {
  const fs = await lazyFs(t)
  const mk = dirMaker(join(work, 'nodigest'))
  const mp0 = await mk('0')
  await fs.mount(mp0, info(0))
  await until(fs, 3)
  const { tocDigest: _drop, ...noDigest } = info(1)
  const err = await fs.mount(await mk('1'), noDigest).then(() => undefined, (e: unknown) => e)
  t.match((err as Error | undefined)?.message, /no containerd\.io\/snapshot\/stargz\/toc\.digest annotation/, 'refused')
  t.equal(fs.resolverStats().layers, 2, 'the unverifiable layer was evicted')
  await fs.unmount(mp0)
})

t.test('closing with look-aheads in hand releases them', async (t) => {
  const fs = await lazyFs(t)
  const mp = await dirMaker(join(work, 'close'))('0')
  await fs.mount(mp, info(0))
  await until(fs, 3)
  await fs.close()
  t.same(fs.resolverStats(), { layers: 0, refs: 0, openBlobs: 0, started: 0 })
})
