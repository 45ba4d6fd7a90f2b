import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { buildOciLayout, gzipEncoder, pushOciLayout, type BuildOptions } from '../../src/bench/image/oci-image.js'
import { writeTar } from '../../src/bench/image/tar-pack.js'
import { textFile } from '../../src/bench/image/seeded-data.js'
import { startRegistry } from '../../harness/registry.js'

const execFileP = promisify(execFile)
const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')
const hasSkopeo = existsSync('/usr/bin/skopeo')

async function fixture(t: Test): Promise<{ dir: string; tars: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-oci-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const base = join(dir, 'base.tar')
  const app = join(dir, 'app.tar')
  await writeTar(base, [
    { type: 'dir', name: 'etc' },
    { type: 'file', name: 'etc/os-release', size: 20, data: () => [Buffer.from('ID=bench\nNAME=bench\n')] },
    { type: 'file', name: 'etc/big.txt', size: 300_000, data: () => [textFile('big', 300_000)] },
  ])
  await writeTar(app, [{ type: 'dir', name: 'app' }, { type: 'file', name: 'app/hello.py', size: 15, data: () => [Buffer.from('print("hello")\n')] }])
  return { dir, tars: [base, app] }
}

function options(dir: string, tars: string[], out: string): BuildOptions {
  return {
    dir: join(dir, out), tag: 'v1',
    layers: [{ tar: tars[0] as string, createdBy: 'base' }, { tar: tars[1] as string, createdBy: 'app', comment: 'the app' }],
    config: { Cmd: ['python3', '/app/hello.py'], Env: ['PATH=/usr/bin:/bin'], WorkingDir: '/app', Entrypoint: ['/usr/bin/env'] },
  }
}

for (const pigz of [false, true]) {
  t.test(`a valid, deterministic layout (${pigz ? 'pigz' : 'node:zlib'})`, { skip: pigz && !existsSync('/usr/bin/pigz') ? 'no pigz' : false }, async (t) => {
    const { dir, tars } = await fixture(t)
    const encoder = await gzipEncoder({ pigz })
    const a = await buildOciLayout({ ...options(dir, tars, 'a'), encoder })
    const b = await buildOciLayout({ ...options(dir, tars, 'b'), encoder })
    t.equal(a.manifest.digest, b.manifest.digest, 'same inputs, same manifest digest')
    t.same(await readFile(join(a.dir, 'index.json')), await readFile(join(b.dir, 'index.json')))

    t.same(JSON.parse(await readFile(join(a.dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' })
    const index = JSON.parse(await readFile(join(a.dir, 'index.json'), 'utf8'))
    t.equal(index.manifests[0].digest, a.manifest.digest)
    t.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], 'v1')
    const blob = (d: string): Promise<Buffer> => readFile(join(a.dir, 'blobs', 'sha256', d.slice(7)))
    const manifestBytes = await blob(a.manifest.digest)
    t.equal(sha(manifestBytes), a.manifest.digest)
    const manifest = JSON.parse(manifestBytes.toString())
    const config = JSON.parse((await blob(manifest.config.digest)).toString())
    t.same(config.config.Cmd, ['python3', '/app/hello.py'])
    t.same(Object.keys(config.config), ['Env', 'Entrypoint', 'Cmd', 'WorkingDir'], 'keys in a fixed order')
    t.same(config.history.map((h: { created_by: string }) => h.created_by), ['base', 'app'])
    for (const [i, l] of manifest.layers.entries()) {
      const data = await blob(l.digest)
      t.equal(sha(data), l.digest)
      t.equal(data.length, l.size)
      const tar = await readFile(tars[i] as string)
      t.equal(config.rootfs.diff_ids[i], sha(tar), 'diff_id is the digest of the uncompressed tar')
      t.same(gunzipSync(data), tar)
      t.equal(a.layers[i]?.uncompressedSize, tar.length)
    }
    if (hasSkopeo) {
      const { stdout } = await execFileP('skopeo', ['inspect', `oci:${a.dir}:v1`])
      const info = JSON.parse(stdout)
      t.equal(info.Digest, a.manifest.digest, 'skopeo inspect accepts the layout')
      t.same(info.Layers, manifest.layers.map((l: { digest: string }) => l.digest))
    }
  })
}

t.test('an encoder may annotate layers; the annotations reach the manifest', async (t) => {
  const { dir, tars } = await fixture(t)
  const gz = await gzipEncoder({ pigz: false })
  const layout = await buildOciLayout({
    ...options(dir, tars, 'x'),
    encoder: { id: 'annotating', mediaType: gz.mediaType, encode: async (i, o) => { await gz.encode(i, o); return { annotations: { 'bench/layer': i.slice(-8) } } } },
  })
  const manifest = JSON.parse((await readFile(join(layout.dir, 'blobs', 'sha256', layout.manifest.digest.slice(7)))).toString())
  t.same(manifest.layers.map((l: { annotations: Record<string, string> }) => l.annotations['bench/layer']), ['base.tar', '/app.tar'])
})

t.test('no layers is an error that names the image', async (t) => {
  await t.rejects(buildOciLayout({ dir: join(tmpdir(), 'never'), tag: 'empty', layers: [], config: {} }), /empty: no layers/)
})

t.test('pushes to a real docker-registry, digests preserved', { skip: hasSkopeo && existsSync('/usr/bin/docker-registry') ? false : 'needs skopeo and docker-registry' }, async (t) => {
  const { dir, tars } = await fixture(t)
  const layout = await buildOciLayout({ ...options(dir, tars, 'p'), encoder: await gzipEncoder() })
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  await pushOciLayout(layout, `${reg.host}/bench/small:v1`)
  const res = await fetch(`${reg.url}/v2/bench/small/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(res.status, 200)
  t.equal(res.headers.get('docker-content-digest'), layout.manifest.digest)
  t.equal(sha(Buffer.from(await res.arrayBuffer())), layout.manifest.digest)
  for (const l of layout.layers) {
    const head = await fetch(`${reg.url}/v2/bench/small/blobs/${l.digest}`, { method: 'HEAD' })
    t.equal(Number(head.headers.get('content-length')), l.size)
  }
  await t.rejects(pushOciLayout({ dir: layout.dir, tag: 'nope' }, `${reg.host}/bench/small:v2`), /skopeo copy .*nope/)
})
