/**
 * zstd:chunked under real containerd: the busybox layer converted by the reference
 * (`ctr-remote image convert --zstdchunked --oci`, test/fixtures/zstd/busybox.zst) is pushed to a
 * real docker-registry behind a logging proxy, `ctr-remote image rpull` hands it to stargzd, and
 * the layer must be mounted lazily (FUSE, ranges only) and run busybox.
 */
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { mountsUnder, startContainerd } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { buildImage, sha256, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { REPO } from '../../harness/cli.js'
import { ctrOrThrow, daemonScratch } from '../../harness/stargzd.js'
import { convertFile } from '../../harness/convert.js'
import { execFileSync } from 'node:child_process'
import { zstdLayerAnnotations } from '../../src/convert/zstd-layer.js'
import { TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION } from '../../src/estargz/types.js'
import { ZSTD_LAYER_MEDIA_TYPE } from '../../src/estargz/zstd-format.js'

t.setTimeout(600_000)

interface Sidecar { mediaType: string; digest: string; diffID: string; layerAnnotations: Record<string, string> }

t.test('ctr-remote zstd:chunked image: lazy rpull + run under containerd', async (t) => {
  const { dir, root, start, sock } = await daemonScratch(t, 'sgd-zstd-')
  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const proxy = await startFaultProxy(registry.url)
  t.teardown(() => proxy.close())

  const fx = join(REPO, 'test/fixtures/zstd')
  const side = JSON.parse(await readFile(join(fx, 'busybox.json'), 'utf8')) as Sidecar
  const blob = await readFile(join(fx, 'busybox.zst'))
  t.equal(sha256(blob), side.digest, 'fixture blob matches its sidecar')
  const image = buildImage({ layers: [{ data: blob, mediaType: side.mediaType, diffId: side.diffID, annotations: side.layerAnnotations }] })
  await writeOciLayout(join(dir, 'oci'), 'zstd', [image])
  await skopeoPush(join(dir, 'oci'), 'zstd', `${registry.host}/test/busybox:zstd`)
  // The same rootfs through our own writer (convertLayer with zstdChunked, as `stargz convert --zstdchunked`).
  const ours = join(dir, 'ours.zst')
  const conv = await convertFile(execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim(), ours, { zstdChunked: true })
  const oursBlob = await readFile(ours)
  const oursImage = buildImage({ layers: [{ data: oursBlob, mediaType: ZSTD_LAYER_MEDIA_TYPE, diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest, [UNCOMPRESSED_SIZE_ANNOTATION]: String(conv.uncompressedSize), ...zstdLayerAnnotations(conv) } }] })
  await writeOciLayout(join(dir, 'oci-ours'), 'ours', [oursImage])
  await skopeoPush(join(dir, 'oci-ours'), 'ours', `${registry.host}/test/busybox:ours`)

  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'no_background_fetch = true\n')
  const sgd = await start(['--config', cfg, '--log-level', 'debug', '--hosts-dir', join(dir, 'certs.d')])
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const ctr = ctrOrThrow(ctrd, () => sgd.raw.join('\n'))

  const ref = `${proxy.host}/test/busybox:zstd`
  proxy.clearLog()
  const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', ref])
  t.equal(rp.code, 0, `rpull: ${rp.stderr}`)
  t.ok(sgd.logs.some((l) => l.msg === 'remote-snapshot-prepared'), 'remote-snapshot-prepared logged', { fallback: sgd.logs.filter((l) => l.msg === 'remote-snapshot-fallback') })
  t.notOk(sgd.logs.some((l) => l.msg === 'remote-snapshot-fallback'), 'no fallback')
  const out = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 'zstd1', '/bin/busybox', 'echo', 'hello'])
  t.match(out, /^hello$/m, 'lazily pulled zstd:chunked container printed hello')

  const gets = proxy.log.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${side.digest}`))
  t.ok(gets.length > 0, 'the layer was read from the registry')
  t.notOk(gets.some((r) => r.range === undefined), 'never a whole-blob GET of the layer')
  t.ok((await mountsUnder(root)).some((m) => m.includes('snapshots')), 'the layer is a FUSE mount under the snapshotter root')

  const oursRef = `${proxy.host}/test/busybox:ours`
  proxy.clearLog()
  const rp2 = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', oursRef])
  t.equal(rp2.code, 0, `rpull of our zstd:chunked image: ${rp2.stderr}`)
  const out2 = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), oursRef, 'zstd2', '/bin/busybox', 'echo', 'hello ours'])
  t.match(out2, /^hello ours$/m, 'our zstd:chunked output runs lazily too')
  const gets2 = proxy.log.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${sha256(oursBlob)}`))
  t.ok(gets2.length > 0 && !gets2.some((r) => r.range === undefined), 'our layer was read in ranges only')
  t.notOk(sgd.logs.some((l) => l.msg === 'remote-snapshot-fallback'), 'still no fallback')

  const r = await sgd.close()
  t.equal(r.code, 0, 'SIGTERM exits 0')
  t.same(await mountsUnder(root), [], 'no mounts left')
})
