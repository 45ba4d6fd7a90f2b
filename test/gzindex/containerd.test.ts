/**
 * The daemon under real containerd: a plain gzip image (never converted) with a gzip index pushed
 * next to it by `stargz index` is pulled lazily (remote snapshot, FUSE layer, only part of the
 * layer fetched) and runs; the same image without an index falls back to a normal pull, logged.
 * Then the python3 bench image (3 plain gzip layers, as built for `stargz bench`) the same way:
 * every layer remote through its index, `python3 -c 'print("hello")'` prints hello.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { copyFile, mkdir, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { startContainerd, mountsUnder } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { buildImage, sha256, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { REPO, runStargz } from '../../harness/cli.js'
import { ctrOrThrow, daemonScratch, type StargzdProcess } from '../../harness/stargzd.js'
import { buildBenchImage } from '../../src/bench/image/images.js'
import { pushOciLayout } from '../../src/bench/image/oci-image.js'

t.setTimeout(900_000)

t.test('plain gzip + stargz index: lazy under containerd; no index: normal pull', async (t) => {
  const { dir, root, start: startDaemon, sock } = await daemonScratch(t, 'sgd-gzindex-')
  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const proxy = await startFaultProxy(registry.url)
  t.teardown(() => proxy.close())

  const baseTar = execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim()
  const rootfsTar = join(dir, 'rootfs.tar')
  await copyFile(baseTar, rootfsTar)
  await mkdir(join(dir, 'extra', 'data'), { recursive: true })
  await writeFile(join(dir, 'extra', 'data', 'model.bin'), randomBytes(8 << 20))
  execFileSync('tar', ['-rf', rootfsTar, '-C', join(dir, 'extra'), 'data'])
  const blob = execFileSync('gzip', ['-6', '-c', rootfsTar], { maxBuffer: 64 << 20 })
  const diffId = 'sha256:' + execFileSync('sha256sum', [rootfsTar], { encoding: 'utf8' }).split(' ')[0]
  const img = buildImage({ layers: [{ data: blob, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId }] })
  await writeOciLayout(join(dir, 'plain'), 'plain', [img])
  await skopeoPush(join(dir, 'plain'), 'plain', `${registry.host}/test/indexed:v1`)
  // Other content for the image without an index: the same diff ID would be reused from the
  // snapshot store (same chain ID) and never prepared again.
  const rootfsTar2 = join(dir, 'rootfs2.tar')
  await copyFile(rootfsTar, rootfsTar2)
  await writeFile(join(dir, 'extra', 'data', 'other.txt'), 'other\n')
  execFileSync('tar', ['-rf', rootfsTar2, '-C', join(dir, 'extra'), 'data/other.txt'])
  const blob2 = execFileSync('gzip', ['-6', '-c', rootfsTar2], { maxBuffer: 64 << 20 })
  const diffId2 = 'sha256:' + execFileSync('sha256sum', [rootfsTar2], { encoding: 'utf8' }).split(' ')[0]
  await writeOciLayout(join(dir, 'plain2'), 'plain2', [buildImage({ layers: [{ data: blob2, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: diffId2 }] })])
  await skopeoPush(join(dir, 'plain2'), 'plain2', `${registry.host}/test/unindexed:v1`)
  const ix = await runStargz(['index', `${registry.host}/test/indexed:v1`, '--spacing', '1', '--plain-http', '--hosts-dir', join(dir, 'certs.d')])
  t.equal(ix.code, 0, ix.stderr)

  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'no_background_fetch = true\n')
  const sgd: StargzdProcess = await startDaemon(['--config', cfg, '--log-level', 'debug', '--hosts-dir', join(dir, 'certs.d')])
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const ctr = ctrOrThrow(ctrd, () => sgd.raw.join('\n'))

  const ref = `${proxy.host}/test/indexed:v1`
  proxy.clearLog()
  const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', ref])
  t.equal(rp.code, 0, `rpull: ${rp.stderr}`)
  t.ok(sgd.logs.some((l) => l.msg === 'lazy-layer-mounted-gzindex'), 'the layer is mounted through its gzip index')
  t.ok(sgd.logs.some((l) => l.msg === 'remote-snapshot-prepared'), 'remote snapshot')
  t.notOk(sgd.logs.some((l) => l.msg === 'remote-snapshot-fallback'), 'no fallback')
  t.ok((await mountsUnder(root)).some((m) => m.includes('snapshots')), 'a FUSE layer mount exists')
  const out = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 'gz1', '/bin/busybox', 'echo', 'hello'])
  t.match(out, /^hello$/m, 'the lazily pulled plain gzip container printed hello')
  const layerDigest = sha256(blob)
  const gets = proxy.log.filter((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${layerDigest}`))
  t.ok(gets.length > 0 && gets.every((r) => r.range !== undefined), 'the layer was read by ranges only')
  const fetched = gets.reduce((n, r) => { const m = /bytes=(\d+)-(\d+)/.exec(r.range ?? ''); return n + (m ? Number(m[2]) - Number(m[1]) + 1 : 0) }, 0)
  t.ok(fetched < blob.length * 0.6, `fetched ${fetched} of ${blob.length} layer bytes`)

  const uref = `${proxy.host}/test/unindexed:v1`
  const before = sgd.logs.length
  const rp2 = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', uref])
  t.equal(rp2.code, 0, `rpull unindexed: ${rp2.stderr}`)
  const later = sgd.logs.slice(before)
  t.ok(later.some((l) => l.msg === 'gzindex-not-found'), 'no index: logged')
  t.ok(later.some((l) => l.msg === 'remote-snapshot-fallback'), 'no index: normal pull (fallback)')
  const out2 = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), uref, 'gz2', '/bin/busybox', 'echo', 'hello plain'])
  t.match(out2, /hello plain/)
})

t.test('the python3 bench image, plain gzip + stargz index: every layer lazy, python3 prints hello', async (t) => {
  const { dir, root, start: startDaemon, sock } = await daemonScratch(t, 'sgd-gzpy-')
  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const proxy = await startFaultProxy(registry.url)
  t.teardown(() => proxy.close())
  const image = await buildBenchImage('python3', { log: (m) => t.comment(m) })
  const ref = `${registry.host}/bench/python3:gzindex`
  await pushOciLayout(image.layout, ref)
  const ix = await runStargz(['index', ref, '--plain-http', '--hosts-dir', join(dir, 'certs.d')])
  t.equal(ix.code, 0, ix.stderr)
  const layers = image.layout.layers
  t.equal(ix.stdout.toString().trim().split('\n').length, layers.length, `${layers.length} layers indexed`)

  const sgd: StargzdProcess = await startDaemon(['--log-level', 'debug', '--hosts-dir', join(dir, 'certs.d')])
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const ctr = ctrOrThrow(ctrd, () => sgd.raw.join('\n'))
  const pref = `${proxy.host}/bench/python3:gzindex`
  proxy.clearLog()
  const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', pref])
  t.equal(rp.code, 0, `rpull: ${rp.stderr}`)
  const mounted = sgd.logs.filter((l) => l.msg === 'lazy-layer-mounted-gzindex')
  t.equal(mounted.length, layers.length, 'every layer mounted through its gzip index (remote layers)')
  t.notOk(sgd.logs.some((l) => l.msg === 'remote-snapshot-fallback'), 'no fallback to a normal pull')
  t.ok((await mountsUnder(root)).filter((m) => m.includes('snapshots')).length >= layers.length, 'FUSE layer mounts exist')
  const out = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), pref, 'py1', 'python3', '-c', 'print("hello")'])
  t.match(out, /^hello$/m, 'python3 ran from the lazily pulled plain gzip image')
  const total = layers.reduce((n, l) => n + l.size, 0)
  const fetched = proxy.log.filter((r) => r.method === 'GET' && r.path.includes('/blobs/sha256:') && r.range !== undefined)
    .reduce((n, r) => { const m = /bytes=(\d+)-(\d+)/.exec(r.range ?? ''); return n + (m ? Number(m[2]) - Number(m[1]) + 1 : 0) }, 0)
  t.comment(`layer bytes fetched by range: ${fetched} of ${total}`)
  t.ok(proxy.log.filter((r) => r.method === 'GET' && layers.some((l) => r.path.endsWith(`/blobs/${l.digest}`))).every((r) => r.range !== undefined), 'layers read by ranges only (no whole-blob pull)')
})
