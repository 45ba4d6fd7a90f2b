import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, sha256, tarOf } from '../../harness/image.js'
import { runStargz } from '../../harness/cli.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { findIndex, indexTag } from '../../src/gzindex/artifact.js'

// stargz index against the real docker-registry (2.8, no referrers API): the index is pushed under
// sha256-<layer>.gzindex, found again, read lazily (a small file costs a fraction of the layer),
// and after `skopeo copy` of the image plus `stargz index` on the copy, the copy works the same.
const run = promisify(execFile)
const reg = await startRegistry()
t.teardown(() => reg.close())
const work = mkdtempSync(join(tmpdir(), 'gzindex-reg-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

const small = Buffer.from('hello from a plain gzip layer\n')
const bulk = Array.from({ length: 12 }, (_, i) => ({ name: `data/blob-${i}.bin`, data: Buffer.concat([randomBytes(200_000), Buffer.alloc(300_000, i)]) }))
const tar = tarOf([{ name: 'data/', type: 'dir' }, ...bulk, { name: 'etc/hello.txt', data: small }])
const layer = { data: gzipSync(tar, { level: 6 }), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar) }
const img = buildImage({ layers: [layer] })
const client = new RegistryClient({ plainHttp: true, hostsDir: join(work, 'certs.d'), credentials: new StaticCredentials({}) })
t.teardown(() => client.close())
const ref = `${reg.host}/gz/plain:v1`
await client.pushImage(ref, img.config, img.layers)
const common = ['--plain-http', '--hosts-dir', join(work, 'certs.d')]
const layerDigest = sha256(layer.data)

t.test('no index published: cat through the index is refused, clearly', async (t) => {
  const r = await runStargz(['index', 'cat', ref, 'etc/hello.txt', ...common])
  t.equal(r.code, 1)
  t.match(r.stderr, /no gzip index published for layer/)
})

t.test('stargz index REF pushes the index under the tag convention, with subject', async (t) => {
  const r = await runStargz(['index', ref, '--spacing', '1', ...common])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout.toString(), indexTag(layerDigest))
  const m = await client.fetchManifest(`${reg.host}/gz/plain:${indexTag(layerDigest)}`)
  const body = JSON.parse(m.bytes.toString()) as { subject?: { digest: string }; artifactType?: string }
  const image = await client.resolve(ref)
  t.equal(body.subject?.digest, image.digest, 'subject is the image manifest')
  t.equal(body.artifactType, 'application/vnd.stargzd.gzindex.v1')
  const found = await findIndex(client, { ...image.reference }, { digest: layerDigest, size: layer.data.length })
  t.ok(found && found.index.files.length === 14, 'found and decoded, bound to the layer')
})

t.test('cat through the index: exact bytes, lazily', async (t) => {
  const r = await runStargz(['index', 'cat', ref, 'etc/hello.txt', '--stats', ...common])
  t.equal(r.code, 0, r.stderr)
  t.ok(r.stdout.equals(small))
  const fetched = Number(/fetched (\d+) of/.exec(r.stderr)?.[1])
  t.ok(fetched > 0 && fetched < layer.data.length / 3, `fetched ${fetched} of ${layer.data.length} bytes`)
  const big = await runStargz(['index', 'cat', ref, '/data/blob-5.bin', ...common])
  t.equal(createHash('sha256').update(big.stdout).digest('hex'), createHash('sha256').update(bulk[5]!.data).digest('hex'))
  const v = await runStargz(['index', 'verify', ref, ...common])
  t.equal(v.code, 0, v.stderr)
  t.match(v.stdout.toString(), /ok: 13 files/)
})

t.test('skopeo copy + stargz index on the copy keeps it working', async (t) => {
  const copy = `${reg.host}/gz/copied:v1`
  await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${ref}`, `docker://${copy}`])
  const before = await runStargz(['index', 'cat', copy, 'etc/hello.txt', ...common])
  t.equal(before.code, 1, 'skopeo copies the image, not the index')
  const r = await runStargz(['index', copy, ...common])
  t.equal(r.code, 0, r.stderr)
  const after = await runStargz(['index', 'cat', copy, 'etc/hello.txt', ...common])
  t.equal(after.code, 0, after.stderr)
  t.ok(after.stdout.equals(small))
  // The index tag can also be copied as an artifact by skopeo itself, to a third repository.
  const third = `${reg.host}/gz/third:v1`
  await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${ref}`, `docker://${third}`])
  const tagged = indexTag(layerDigest)
  const cp = await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${reg.host}/gz/plain:${tagged}`, `docker://${reg.host}/gz/third:${tagged}`]).then(() => 0, (e: Error) => { t.comment(`skopeo copy of the index artifact: ${e.message.split('\n')[0]}`); return 1 })
  if (cp === 0) {
    const third1 = await runStargz(['index', 'cat', third, 'etc/hello.txt', ...common])
    t.equal(third1.code, 0, third1.stderr)
    t.ok(third1.stdout.equals(small), 'the skopeo-copied index works too')
  }
  t.equal(cp, 0, 'skopeo copies the index artifact (an OCI manifest with an empty config) as it is')
})

t.test('skopeo copy + `stargz index copy SRC DST`: the indexes follow without reading the layer again', async (t) => {
  const fourth = `${reg.host}/gz/fourth:v1`
  await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${ref}`, `docker://${fourth}`])
  t.equal((await runStargz(['index', 'cat', fourth, 'etc/hello.txt', ...common])).code, 1, 'no index beside the copy yet')
  const c = await runStargz(['index', 'copy', ref, fourth, ...common])
  t.equal(c.code, 0, c.stderr)
  t.match(c.stdout.toString(), indexTag(layerDigest))
  const m = await client.fetchManifest(`${reg.host}/gz/fourth:${indexTag(layerDigest)}`)
  const body = JSON.parse(m.bytes.toString()) as { subject?: { digest: string } }
  t.equal(body.subject?.digest, (await client.resolve(fourth)).digest, 'subject re-pointed at the copy')
  const after = await runStargz(['index', 'cat', fourth, 'etc/hello.txt', ...common])
  t.equal(after.code, 0, after.stderr)
  t.ok(after.stdout.equals(small))
  const none = await runStargz(['index', 'copy', `${reg.host}/gz/unrelated:v1`, fourth, ...common])
  t.not(none.code, 0, 'copying from a repository without indexes fails clearly')
})
