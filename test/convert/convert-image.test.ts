/**
 * `stargz convert` against a real docker-registry, OCI layouts on disk, and real containerd
 * (its own overlayfs snapshotter) unpacking the result.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { OciLayoutInput } from '../../src/convert/oci-layout.js'
import { RegistryInput } from '../../src/convert/registry-io.js'
import { TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION } from '../../src/estargz/types.js'
import { RegistryClient } from '../../src/registry/client.js'
import { parseReference } from '../../src/registry/reference.js'
import { buildImage, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { startRegistry } from '../../harness/registry.js'
import { ESTARGZ_EXTRA_FILES } from '../../harness/tree.js'
import {
  busyboxRootfs, containerd, ctrOk, diffIdOf, gzipFileLayer, HELLO, pulledTree, readImage, runCommand, tempDir, topLayer, verifyLayer,
} from '../../harness/convert-fixtures.js'

t.setTimeout(1_200_000)

const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip'
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'

t.test('convert: registry↔registry, oci→registry, registry→oci', async (t) => {
  const dir = await tempDir(t, 'stargz-convert-')
  const cacheDir = join(dir, 'cache')
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const client = new RegistryClient({ plainHttp: true })
  t.teardown(() => client.close())

  const base = await gzipFileLayer(await busyboxRootfs())
  const image = buildImage({ layers: [base, topLayer()] })
  const history = [{ created: '2024-01-01T00:00:00Z', created_by: 'base' }, { created: '2024-01-02T00:00:00Z', created_by: 'top' }]
  const config = JSON.parse(image.config.toString('utf8')) as Record<string, unknown>
  config.history = history
  const configBytes = Buffer.from(JSON.stringify(config))

  // A Docker-typed source pushed with our client; an OCI-typed one as an OCI layout (and skopeo).
  const dockerSrc = `${reg.host}/src/busybox-docker:1`
  await client.pushImage(dockerSrc, configBytes, [
    { data: base.data, mediaType: DOCKER_LAYER },
    { data: topLayer().data, mediaType: DOCKER_LAYER },
  ], { manifestMediaType: 'application/vnd.docker.distribution.manifest.v2+json' })
  const layout = join(dir, 'layout')
  await writeOciLayout(layout, 'v1', [image])
  const ociSrc = `${reg.host}/src/busybox-oci:1`
  await skopeoPush(layout, 'v1', ociSrc)
  const convert = (src: string, dst: string, extra: string[] = []) => runCommand('convert', [src, dst, '--plain-http', '--cache-dir', cacheDir, '--json', ...extra])

  let dockerOut: { digest: string; images: Array<{ layers: Array<{ action: string; source: string; digest: string; tocDigest: string }> }> }
  await t.test('registry → registry keeps Docker media types; every layer is verifiable eStargz', async (t) => {
    const r = await convert(dockerSrc, `${reg.host}/out/busybox-docker:esgz`)
    t.equal(r.code, 0, "exits 0", { stderr: r.stderr })
    dockerOut = JSON.parse(r.stdout)
    const input = new RegistryInput(client, parseReference(`${reg.host}/out/busybox-docker:esgz`))
    const img = await readImage(input)
    t.equal(img.digest, dockerOut.digest, 'summary digest is what the tag points at')
    t.equal(img.mediaType, 'application/vnd.docker.distribution.manifest.v2+json')
    t.equal(img.manifest.config.mediaType, 'application/vnd.docker.container.image.v1+json')
    t.equal(img.manifest.layers.length, 2)
    const diffIDs = (img.config.rootfs as { diff_ids: string[] }).diff_ids
    for (const [i, l] of img.manifest.layers.entries()) {
      t.equal(l.mediaType, DOCKER_LAYER, `layer ${i} media type`)
      const reader = await verifyLayer(input, l)
      t.equal(reader.tocDigest, l.annotations?.[TOC_DIGEST_ANNOTATION], `layer ${i} TOC digest annotation`)
      t.ok(reader.lookup('.no.prefetch.landmark'), `layer ${i} has the no-prefetch landmark`)
      t.equal(await diffIdOf(input, l), diffIDs[i], `layer ${i} diff_id matches the blob`)
      t.ok(Number(l.annotations?.[UNCOMPRESSED_SIZE_ANNOTATION]) > 0, `layer ${i} uncompressed-size annotation`)
    }
    t.same(img.config.history, history, 'history kept')
    t.same((img.config.config as { Cmd: string[] }).Cmd, ['/bin/sh'], 'container config kept')
    const top = await verifyLayer(input, img.manifest.layers[1] as never)
    t.same(await top.readFile('data/hello.txt'), HELLO)
    t.equal(top.lookup('etc/.wh.group')?.type, 'reg', 'whiteout carried as its tar entry')
  })

  await t.test('converting again gives the same manifest digest (cache and fresh)', async (t) => {
    const again = await convert(dockerSrc, `${reg.host}/out/busybox-docker:again`)
    t.equal(again.code, 0, "exits 0", { stderr: again.stderr })
    const s = JSON.parse(again.stdout) as typeof dockerOut
    t.equal(s.digest, dockerOut.digest, 'same digest from the cache')
    t.same(s.images[0]?.layers.map((l) => l.action), ['cached', 'cached'])
    const fresh = await runCommand('convert', [dockerSrc, `${reg.host}/out/busybox-docker:fresh`, '--plain-http', '--cache-dir', join(dir, 'cache2'), '--json'])
    t.equal(fresh.code, 0, "exits 0", { stderr: fresh.stderr })
    t.equal((JSON.parse(fresh.stdout) as typeof dockerOut).digest, dockerOut.digest, 'same digest converting from scratch')
    // Converting the converted image keeps its (already eStargz) layers: a fixed point.
    const twice = await convert(`${reg.host}/out/busybox-docker:esgz`, `${reg.host}/out/busybox-docker:twice`)
    t.equal(twice.code, 0, "exits 0", { stderr: twice.stderr })
    const s2 = JSON.parse(twice.stdout) as typeof dockerOut
    t.same(s2.images[0]?.layers.map((l) => l.action), ['kept', 'kept'])
    t.equal(s2.digest, dockerOut.digest, 'an eStargz image converts to itself')
    // Kept layers reach another repository of the same registry by cross-repo mount, not upload.
    const moved = await convert(`${reg.host}/out/busybox-docker:esgz`, `${reg.host}/elsewhere/busybox:1`)
    t.equal(moved.code, 0, 'exits 0', { stderr: moved.stderr })
    const s3 = JSON.parse(moved.stdout) as { images: Array<{ layers: Array<{ placement: string }> }> }
    t.same(s3.images[0]?.layers.map((l) => l.placement), ['mounted', 'mounted'])
  })

  await t.test('oci layout → registry, --docker forces Docker types', async (t) => {
    const r = await convert(`oci:${layout}:v1`, `${reg.host}/out/busybox-oci:esgz`)
    t.equal(r.code, 0, "exits 0", { stderr: r.stderr })
    const input = new RegistryInput(client, parseReference(`${reg.host}/out/busybox-oci:esgz`))
    const img = await readImage(input)
    t.equal(img.mediaType, 'application/vnd.oci.image.manifest.v1+json', 'OCI stays OCI')
    t.same(img.manifest.layers.map((l) => l.mediaType), [OCI_LAYER, OCI_LAYER])
    for (const l of img.manifest.layers) await verifyLayer(input, l)
    const d = await convert(`oci:${layout}:v1`, `${reg.host}/out/busybox-oci:docker`, ['--docker'])
    t.equal(d.code, 0, "exits 0", { stderr: d.stderr })
    const img2 = await readImage(new RegistryInput(client, parseReference(`${reg.host}/out/busybox-oci:docker`)))
    t.equal(img2.mediaType, 'application/vnd.docker.distribution.manifest.v2+json')
    t.same(img2.manifest.layers.map((l) => l.digest), img.manifest.layers.map((l) => l.digest), 'same layer blobs either way')
  })

  await t.test('registry → oci layout', async (t) => {
    const out = join(dir, 'out-layout')
    const r = await convert(ociSrc, `oci:${out}:converted`)
    t.equal(r.code, 0, "exits 0", { stderr: r.stderr })
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> }
    t.equal(index.manifests.length, 1)
    t.equal(index.manifests[0]?.annotations['org.opencontainers.image.ref.name'], 'converted')
    t.equal(index.manifests[0]?.digest, (JSON.parse(r.stdout) as { digest: string }).digest)
    t.same(JSON.parse(await readFile(join(out, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' })
    const input = new OciLayoutInput(out, 'converted')
    const img = await readImage(input)
    for (const l of img.manifest.layers) await verifyLayer(input, l)
    // The same conversion pushed to a registry has the same digest: the layout holds the same bytes.
    const viaRegistry = await convert(`oci:${layout}:v1`, `${reg.host}/out/busybox-oci:esgz2`)
    t.equal((JSON.parse(viaRegistry.stdout) as { digest: string }).digest, img.digest)
  })

  await t.test('containerd (overlayfs snapshotter) unpacks the same tree as the source', async (t) => {
    const c = await containerd(t)
    const scratch = await tempDir(t, 'stargz-convert-view-')
    const srcImg = await readImage(new RegistryInput(client, parseReference(dockerSrc)))
    const outImg = await readImage(new RegistryInput(client, parseReference(`${reg.host}/out/busybox-docker:esgz`)))
    const srcTree = await pulledTree(c, dockerSrc, (srcImg.config.rootfs as { diff_ids: string[] }).diff_ids, scratch)
    const outTree = await pulledTree(c, `${reg.host}/out/busybox-docker:esgz`, (outImg.config.rootfs as { diff_ids: string[] }).diff_ids, scratch, ESTARGZ_EXTRA_FILES)
    // The snapshot root's mtime is when containerd unpacked into it (no layer has a "./" entry).
    for (const tree of [srcTree, outTree]) delete (tree['.'] as { mtimeNs?: string }).mtimeNs
    t.ok(Object.keys(srcTree).length > 250, `busybox tree has ${Object.keys(srcTree).length} entries`)
    t.notOk('etc/group' in outTree, 'the whiteout removed /etc/group')
    t.ok('data/hello.txt' in outTree)
    t.same(outTree, srcTree, 'same paths, types, modes, owners, times, contents')
    const ran = await ctrOk(c, ['run', '--rm', ...c.runArgs(), `${reg.host}/out/busybox-docker:esgz`, 'cat1', '/bin/busybox', 'cat', '/data/hello.txt'])
    t.equal(ran, HELLO.toString())
  })
})
