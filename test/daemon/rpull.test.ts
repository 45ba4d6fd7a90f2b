/**
 * `stargz rpull` end to end: real containerd 1.6 with `[proxy_plugins.stargz]` → stargzd (real
 * FUSE), a real docker-registry behind a logging proxy. rpull talks to containerd's gRPC API
 * only (no ctr-remote): the eStargz layer must become a remote snapshot (never a whole-blob GET)
 * and `ctr run` must start from it; a plain gzip image must be downloaded, applied and run.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { copyFile, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startContainerd } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { buildImage, sha256, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { convertFile } from '../../harness/convert.js'
import { REPO, runStargz } from '../../harness/cli.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'
import { ctrOrThrow, daemonScratch } from '../../harness/stargzd.js'

t.setTimeout(600_000)

t.test('stargz rpull pulls lazily into containerd; ctr run starts from it', async (t) => {
  const { dir, start, sock } = await daemonScratch(t, 'sgd-rpull-')
  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const proxy = await startFaultProxy(registry.url)
  t.teardown(() => proxy.close())

  const baseTar = execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim()
  const rootfsTar = join(dir, 'rootfs.tar')
  await copyFile(baseTar, rootfsTar)
  const esgzPath = join(dir, 'busybox.estargz')
  const conv = await convertFile(rootfsTar, esgzPath)
  const esgz = await readFile(esgzPath)
  const image = buildImage({ layers: [{ data: esgz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } }] })
  await writeOciLayout(join(dir, 'esgz'), 'esgz', [image])
  await skopeoPush(join(dir, 'esgz'), 'esgz', `${registry.host}/rpull/busybox:esgz`)
  const plainBlob = execFileSync('gzip', ['-c', rootfsTar], { maxBuffer: 64 << 20 })
  const plain = buildImage({ layers: [{ data: plainBlob, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: 'sha256:' + execFileSync('sha256sum', [rootfsTar], { encoding: 'utf8' }).split(' ')[0] }] })
  await writeOciLayout(join(dir, 'plain'), 'plain', [plain])
  await skopeoPush(join(dir, 'plain'), 'plain', `${registry.host}/rpull/plain:v1`)

  const sgd = await start(['--log-level', 'debug', '--hosts-dir', join(dir, 'certs.d')])
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const ctr = ctrOrThrow(ctrd, () => sgd.raw.join('\n'))
  const rpull = (ref: string): ReturnType<typeof runStargz> => runStargz(['rpull', '--plain-http', '--address', ctrd.address, '--namespace', ctrd.namespace, ref])

  const ref = `${proxy.host}/rpull/busybox:esgz`
  proxy.clearLog()
  const r = await rpull(ref)
  t.equal(r.code, 0, `rpull: ${r.stderr}`)
  t.match(r.stdout.toString(), new RegExp(`^${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} sha256:[0-9a-f]{64}\\n$`), 'prints the image name and target digest')
  t.match(r.stderr, /lazy \(remote snapshot\)/, 'the layer went remote')
  t.ok(sgd.logs.some((l) => l.msg === 'remote-snapshot-prepared'), 'stargzd logged remote-snapshot-prepared')
  const layerDigest = sha256(esgz)
  const gets = proxy.log.filter((x) => x.method === 'GET' && x.path.endsWith(`/blobs/${layerDigest}`))
  t.ok(gets.length > 0, 'stargzd read the layer from the registry')
  t.notOk(gets.some((x) => x.range === undefined), 'never a whole-blob GET of the layer')

  const images = await ctr(['images', 'ls', '-q'])
  t.match(images, ref, 'containerd has the image record')
  const out = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 'rpull1', '/bin/busybox', 'echo', 'hello rpull'])
  t.match(out, /^hello rpull$/m, 'a container runs from the lazily pulled image')

  const again = await rpull(ref)
  t.equal(again.code, 0, `second rpull: ${again.stderr}`)
  t.match(again.stderr, /already present/, 'a second rpull reuses the snapshot')

  // containerd keeps the snapshot through the config's gc label once the lease is gone.
  const content = await ctr(['content', 'ls'])
  t.match(content, new RegExp(`containerd\\.io/gc\\.ref\\.snapshot\\.stargz=${conv.diffID}`), 'config labelled with the top snapshot (gc root)')

  // An image already in the store from a plain `ctr pull` (overlayfs): rpull adds the stargz gc
  // label to the existing config instead of leaving the new snapshots unreferenced.
  const pref = `${proxy.host}/rpull/plain:v1`
  await ctr(['images', 'pull', '--plain-http', pref])
  const p = await rpull(pref)
  t.equal(p.code, 0, `rpull plain: ${p.stderr}`)
  t.match(p.stderr, /downloaded and unpacked/, 'a plain gzip layer is downloaded and applied')
  const out2 = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), pref, 'rpull2', '/bin/busybox', 'echo', 'hello plain'])
  t.match(out2, /hello plain/, 'the unpacked image runs')
  const both = (await ctr(['content', 'ls'])).split('\n').filter((l) => l.includes('containerd.io/gc.ref.snapshot.overlayfs=') && l.includes('containerd.io/gc.ref.snapshot.stargz='))
  t.equal(both.length, 1, 'the existing config keeps its overlayfs label and gains the stargz one')

  const bad = await runStargz(['rpull', '--address', join(dir, 'nope.sock'), '--plain-http', ref])
  t.equal(bad.code, 1, 'an unreachable containerd is a runtime error, not a usage error')
  t.match(bad.stderr, /^stargz: ERR_UNAVAILABLE: containerd /m)
})
