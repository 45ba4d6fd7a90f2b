import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, footerOnlyEstargz, gzipLayer, skopeoPush, writeOciLayout, sha256 } from '../../harness/image.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { NotFoundError } from '../../src/errors.js'

const reg = await startRegistry()
t.teardown(() => reg.close())
const work = await mkdtemp(join(tmpdir(), 'stargz-resolve-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const client = new RegistryClient({ plainHttp: true, hostsDir: join(work, 'no-certs.d'), credentials: new StaticCredentials({}) })
t.teardown(() => client.close())

const amd = buildImage({ layers: [gzipLayer([{ name: 'hello.txt', data: Buffer.from('hello amd64\n') }]), footerOnlyEstargz([{ name: 'b', data: Buffer.from('b') }])] })
const arm = buildImage({ architecture: 'arm64', variant: 'v8', layers: [gzipLayer([{ name: 'hello.txt', data: Buffer.from('hello arm64\n') }])] })

t.test('single-platform image pushed with skopeo resolves by tag and by digest', async (t) => {
  const dir = join(work, 'single')
  await writeOciLayout(dir, 'v1', [amd])
  await skopeoPush(dir, 'v1', `${reg.host}/single/app:v1`)
  const byTag = await client.resolve(`${reg.host}/single/app:v1`)
  t.equal(byTag.digest, amd.manifestDigest)
  t.equal(byTag.configDescriptor.digest, amd.configDigest)
  t.equal(byTag.layers.length, 2)
  t.same(byTag.layers.map((l) => l.digest), amd.layers.map((l) => sha256(l.data)))
  t.equal(byTag.layers[1]?.annotations?.['containerd.io/snapshot/stargz/toc.digest'], amd.layers[1]?.annotations?.['containerd.io/snapshot/stargz/toc.digest'], 'layer annotations kept')
  t.same(byTag.platform, { os: 'linux', architecture: 'amd64' })
  t.equal(byTag.config.architecture, 'amd64')
  const byDigest = await client.resolve(`${reg.host}/single/app@${amd.manifestDigest}`)
  t.equal(byDigest.digest, amd.manifestDigest)
  t.equal(byDigest.indexDigest, undefined)
})

t.test('multi-platform index pushed with skopeo: platform selection', async (t) => {
  const dir = join(work, 'multi')
  const indexDigest = await writeOciLayout(dir, 'multi', [amd, arm])
  await skopeoPush(dir, 'multi', `${reg.host}/multi/app:multi`)
  const a = await client.resolve(`${reg.host}/multi/app:multi`, { platform: 'linux/amd64' })
  t.equal(a.digest, amd.manifestDigest)
  t.equal(a.indexDigest, indexDigest)
  const b = await client.resolve(`${reg.host}/multi/app:multi`, { platform: 'linux/arm64' })
  t.equal(b.digest, arm.manifestDigest, 'linux/arm64 matches the v8 entry')
  t.same(b.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' })
  const byIndexDigest = await client.resolve(`${reg.host}/multi/app@${indexDigest}`, { platform: 'linux/arm64/v8' })
  t.equal(byIndexDigest.digest, arm.manifestDigest)
  await t.rejects(client.resolve(`${reg.host}/multi/app:multi`, { platform: 'linux/s390x' }), { name: 'NotFoundError', message: /linux\/s390x.*available: linux\/amd64, linux\/arm64\/v8/ })
})

t.test('our push: monolithic, chunked, mount, index; existence check', async (t) => {
  const ref = `${reg.host}/ours/app:v1`
  const layer = gzipLayer([{ name: 'big.bin', data: Buffer.alloc(300_000, 7) }])
  const chunked = await client.pushBlob(ref, layer.data, { chunkSize: 64 * 1024 })
  t.equal(chunked.via, 'uploaded')
  t.equal(chunked.digest, sha256(layer.data))
  t.equal(await client.blobExists(ref, chunked.digest), true)
  t.equal((await client.pushBlob(ref, layer.data)).via, 'exists', 'second push is skipped by the HEAD check')
  t.equal((await client.pushBlob(`${reg.host}/ours/other:x`, layer.data, { mountFrom: 'ours/app' })).via, 'mounted')
  t.equal(await client.blobExists(`${reg.host}/ours/third:x`, chunked.digest), false)
  const m = await client.pushImage(ref, amd.config, amd.layers)
  t.equal(m.digest, amd.manifestDigest, 'same bytes as the layout the test built')
  const mArm = await client.pushImage(`${reg.host}/ours/app:arm`, arm.config, arm.layers)
  const idx = await client.pushIndex(`${reg.host}/ours/app:multi`, [
    { ...m, platform: amd.platform },
    { ...mArm, platform: arm.platform },
  ])
  const r = await client.resolve(`${reg.host}/ours/app:multi`, { platform: 'linux/arm64/v8' })
  t.equal(r.digest, mArm.digest)
  t.equal(r.indexDigest, idx.digest)
  const fetched = await client.fetchBlob(ref, sha256(layer.data))
  t.ok(fetched.equals(layer.data), 'whole blob comes back verified')
})

t.test('missing tags and blobs are NotFound errors naming what is missing', async (t) => {
  const e1 = await client.resolve(`${reg.host}/single/app:nope`).then(() => undefined, (e: unknown) => e)
  t.ok(e1 instanceof NotFoundError, 'missing tag is NotFoundError')
  t.match((e1 as Error).message, /manifest nope not found in 127\.0\.0\.1:\d+\/single\/app/)
  const d = 'sha256:' + '0'.repeat(64)
  const e2 = await client.blob(`${reg.host}/single/app:v1`, d).then(() => undefined, (e: unknown) => e)
  t.ok(e2 instanceof NotFoundError, 'missing blob is NotFoundError')
  t.ok((e2 as Error).message.includes(d), 'message names the digest')
})

t.test('Docker v2 schema 2 manifest and manifest list', async (t) => {
  const layer = { ...amd.layers[0], mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' } as (typeof amd.layers)[number]
  const m = await client.pushImage(`${reg.host}/docker/app:amd`, amd.config, [layer], { manifestMediaType: 'application/vnd.docker.distribution.manifest.v2+json' })
  const list = await client.pushIndex(`${reg.host}/docker/app:list`, [{ ...m, platform: { os: 'linux', architecture: 'amd64' } }], 'application/vnd.docker.distribution.manifest.list.v2+json')
  const r = await client.resolve(`${reg.host}/docker/app:list`, { platform: 'linux/amd64' })
  t.equal(r.mediaType, 'application/vnd.docker.distribution.manifest.v2+json')
  t.equal(r.digest, m.digest)
  t.equal(r.indexDigest, list.digest)
  t.equal(r.configDescriptor.mediaType, 'application/vnd.docker.container.image.v1+json')
  t.equal(r.layers[0]?.mediaType, 'application/vnd.docker.image.rootfs.diff.tar.gzip')
})
