/**
 * Real containerd 1.6 with `[proxy_plugins.stargz]` → our stargzd (child process), a real
 * docker-registry on 127.0.0.1, a locally built busybox image, runc.
 *
 * Lazy mounts are not wired yet (daemon/filesystem-factory.ts), so this exercises the normal
 * path: every layer falls back and containerd unpacks through our snapshotter.
 */
import t from 'tap'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startContainerd, mountsUnder } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, gzipLayer, skopeoPush, writeOciLayout, type LayerBlob } from '../../harness/image.js'
import { ctrOrThrow, daemonScratch, type StargzdProcess } from '../../harness/stargzd.js'

t.setTimeout(600_000)

t.test('containerd pulls and runs through stargzd, survives kill -9', async (t) => {
  const { dir, root, sock, start: startDaemon } = await daemonScratch(t, 'sgd-')

  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const busybox = await readFile('/usr/bin/busybox')
  const image = buildImage({
    layers: [
      gzipLayer([{ name: 'bin/', type: 'dir' }, { name: 'bin/busybox', data: busybox, mode: 0o755 }, { name: 'tmp/', type: 'dir', mode: 0o1777 }]),
      gzipLayer([{ name: 'etc/', type: 'dir' }, { name: 'etc/greeting', data: Buffer.from('hello from layer 2\n') }]),
    ],
  })
  const layout = join(dir, 'layout')
  await writeOciLayout(layout, 'v1', [image])
  const ref = `${registry.host}/test/busybox:v1`
  await skopeoPush(layout, 'v1', ref)

  const start = (): Promise<StargzdProcess> => startDaemon(['--log-level', 'debug'])
  let sgd = await start()

  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const ctr = ctrOrThrow(ctrd)


  await ctr(['image', 'pull', '--plain-http', '--snapshotter', 'stargz', ref])
  const out = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 't1', '/bin/busybox', 'echo', 'hello'])
  t.match(out, /^hello$/m, 'container printed hello (normal unpack through our snapshotter)')
  const cat = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 't2', '/bin/busybox', 'cat', '/etc/greeting'])
  t.match(cat, /hello from layer 2/, 'upper layer visible through overlay of both layers')

  const snaps = await ctr(['snapshots', '--snapshotter', 'stargz', 'ls'])
  const committed = snaps.split('\n').filter((l) => /Committed/.test(l))
  t.equal(committed.length, 2, 'two committed layer snapshots')
  const committedAfterRpull = () => committed.length + 1

  // ctr-remote rpull adds the stargz labels: our always-failing FileSystem must fall back. A
  // different top layer, so its chain is not already unpacked.
  const image2 = buildImage({ layers: [image.layers[0] as LayerBlob, gzipLayer([{ name: 'etc/', type: 'dir' }, { name: 'etc/other', data: Buffer.from('x\n') }])] })
  const layout2 = join(dir, 'layout2')
  await writeOciLayout(layout2, 'v1', [image2])
  const ref2 = `${registry.host}/test/busybox2:v1`
  await skopeoPush(layout2, 'v1', ref2)
  const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', ref2])
  t.equal(rp.code, 0, `ctr-remote rpull: ${rp.stderr}`)
  t.ok(sgd.logs.some((l) => l.msg === 'remote-snapshot-fallback'), 'remote-snapshot-fallback logged for stargz-labelled layers')

  // kill -9 and start again on the same root.
  await sgd.kill9()
  sgd = await start()
  // containerd's client reconnects with backoff; poll until it reaches the new process.
  let snaps2 = ''
  for (let i = 0; i < 100 && snaps2 === ''; i++) {
    const r = await ctrd.ctr(['snapshots', '--snapshotter', 'stargz', 'ls'])
    if (r.code === 0) snaps2 = r.stdout
    else await sleep(300)
  }
  t.equal(snaps2.split('\n').filter((l) => /Committed/.test(l)).length, committedAfterRpull(), 'committed snapshots intact after kill -9')
  const again = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 't3', '/bin/busybox', 'echo', 'hello again'])
  t.match(again, /hello again/, 'a new container runs after the restart')

  // Nothing leaks: no mounts under our root, and (once containerd's GC removed the containers'
  // active snapshots) every dir under snapshots/ belongs to a live snapshot.
  t.same(await mountsUnder(root), [], 'no mounts left under the snapshotter root')
  let dirs: string[] = []
  let actives = -1
  for (let i = 0; i < 100; i++) {
    const ls = await ctr(['snapshots', '--snapshotter', 'stargz', 'ls'])
    actives = ls.split('\n').filter((l) => /Active/.test(l)).length
    dirs = (await readdir(join(root, 'snapshots'))).sort()
    if (actives === 0 && dirs.length === committedAfterRpull()) break
    await sleep(200)
  }
  t.equal(actives, 0, 'no active snapshots left after ctr run --rm')
  t.equal(dirs.length, committedAfterRpull(), `snapshot dirs match committed snapshots: ${dirs.join(' ')}`)
  t.notOk(dirs.some((d) => d.startsWith('new-')), 'no temp dirs left')

  const r = await sgd.close()
  t.equal(r.code, 0, 'SIGTERM exits 0')
})
