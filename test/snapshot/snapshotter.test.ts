// stargzd-test: e2e (chowns snapshot directories, so it needs root)
import t, { type Test } from 'tap'
import { mkdtemp, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Snapshotter } from '../../src/snapshot/snapshotter.js'
import { REMOTE_LABEL, TARGET_SNAPSHOT_LABEL } from '../../src/snapshot/labels.js'
import { FakeFileSystem, captureLogger } from './fake-fs.js'

const OVERLAY = { indexOff: true, userxattr: false }

async function setup(t: Test, fs = new FakeFileSystem(), mountTimeoutMs = 5000) {
  const root = await mkdtemp(join(tmpdir(), 'sgd-snap-'))
  const { log, lines } = captureLogger()
  let sn = await Snapshotter.open({ root, fs, log, mountTimeoutMs, overlay: OVERLAY })
  t.teardown(async () => {
    await sn.close()
    await rm(root, { recursive: true, force: true })
  })
  return {
    root, fs, lines,
    get sn() { return sn },
    reopen: async () => {
      await sn.close()
      sn = await Snapshotter.open({ root, fs, log, mountTimeoutMs, overlay: OVERLAY })
      return sn
    },
  }
}

const ns = { namespace: 'default' }
const stargzLabels = (chain: string, digest: string) => ({
  [TARGET_SNAPSHOT_LABEL]: chain,
  'containerd.io/snapshot/remote/stargz.reference': '127.0.0.1:5000/busybox:esgz',
  'containerd.io/snapshot/remote/stargz.digest': digest,
  'containerd.io/snapshot/remote/stargz.layers': `${digest},sha256:other`,
  'containerd.io/snapshot/stargz/toc.digest': 'sha256:toc',
})

async function errCode(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p)
  } catch (e) {
    return (e as { code?: string }).code
  }
  return undefined
}

t.test('remote prepare success: AlreadyExists, committed under the ref with labels, logged', async (t) => {
  const s = await setup(t)
  const labels = stargzLabels('sha256:chain1', 'sha256:layer1')
  t.equal(await errCode(s.sn.prepare(ns, 'extract-1 sha256:chain1', '', labels)), 'ERR_ALREADY_EXISTS')
  const info = s.sn.stat(ns, 'sha256:chain1')
  t.equal(info.kind, 'committed')
  t.equal(info.labels[REMOTE_LABEL], 'remote snapshot')
  t.equal(info.labels['containerd.io/snapshot/remote/stargz.digest'], 'sha256:layer1')
  t.equal(await errCode(() => s.sn.stat(ns, 'extract-1 sha256:chain1')), 'ERR_NOT_FOUND', 'the extraction key is gone')
  const call = s.fs.mountCalls[0]
  t.equal(call?.layer.imageRef, '127.0.0.1:5000/busybox:esgz')
  t.equal(call?.layer.tocDigest, 'sha256:toc')
  t.same(call?.layer.imageLayers, ['sha256:layer1', 'sha256:other'])
  t.ok(s.lines.some((l) => l.msg === 'remote-snapshot-prepared' && l.target === 'sha256:chain1'))
  // containerd then lists with this filter and stats the chain ID.
  const found = s.sn.list(ns, ['labels."containerd.io/snapshot.ref"==sha256:chain1,parent==""'])
  t.same(found.map((i) => i.name), ['sha256:chain1'])

  // A child layer on top; Mounts of a container checks the remote lower layers.
  await t.rejects(s.sn.prepare(ns, 'extract-2 sha256:chain2', 'sha256:chain1', stargzLabels('sha256:chain2', 'sha256:layer2')))
  const c = s.sn.list(ns, ['labels."containerd.io/snapshot.ref"==sha256:chain2,parent=="sha256:chain1"'])
  t.equal(c.length, 1)
  const m = await s.sn.prepare(ns, 'container', 'sha256:chain2', {})
  t.equal(m[0]?.type, 'overlay')
  const lower = m[0]?.options.find((o) => o.startsWith('lowerdir='))
  t.match(lower, /snapshots\/2\/fs:.*snapshots\/1\/fs$/, 'lowerdir nearest parent first')
  t.ok(m[0]?.options.includes('index=off'))
  s.fs.unhealthy.add(s.fs.mountCalls[0]?.mountpoint as string)
  t.equal(await errCode(s.sn.mounts(ns, 'container')), 'ERR_UNAVAILABLE', 'unhealthy lower layer → Unavailable')
})

t.test('remote prepare failure falls back to an active snapshot and logs the reason', async (t) => {
  const s = await setup(t)
  s.fs.failDigests.add('sha256:bad')
  const m = await s.sn.prepare(ns, 'extract-1', '', stargzLabels('sha256:c', 'sha256:bad'))
  t.equal(m[0]?.type, 'bind')
  t.same(m[0]?.options, ['rw', 'rbind'])
  t.equal(s.sn.stat(ns, 'extract-1').kind, 'active')
  const line = s.lines.find((l) => l.msg === 'remote-snapshot-fallback')
  t.match(line?.reason, /not eStargz/)
  // containerd unpacks and commits as usual.
  await writeFile(join(m[0]?.source as string, 'file'), 'data')
  await s.sn.commit(ns, 'sha256:c', 'extract-1', { [TARGET_SNAPSHOT_LABEL]: 'sha256:c' })
  const u = await s.sn.usage(ns, 'sha256:c')
  t.ok(u.inodes >= 2 && u.size > 0, 'usage recorded at commit')
})

t.test('mount deadline: a hanging mount is aborted and falls back', async (t) => {
  const fs = new FakeFileSystem()
  fs.hang = true
  const s = await setup(t, fs, 50)
  const m = await s.sn.prepare(ns, 'k', '', stargzLabels('sha256:c', 'sha256:slow'))
  t.equal(m[0]?.type, 'bind')
  t.match(s.lines.find((l) => l.msg === 'remote-snapshot-fallback')?.reason, /did not finish within 50 ms/)
})

t.test('labels without layer info: normal snapshot, no mount attempt', async (t) => {
  const s = await setup(t)
  await s.sn.prepare(ns, 'k', '', { [TARGET_SNAPSHOT_LABEL]: 'sha256:c' })
  t.equal(s.fs.mountCalls.length, 0)
  t.equal(s.sn.stat(ns, 'k').kind, 'active')
})

t.test('CRI labels are understood', async (t) => {
  const s = await setup(t)
  await t.rejects(s.sn.prepare(ns, 'k', '', {
    [TARGET_SNAPSHOT_LABEL]: 'sha256:c',
    'containerd.io/snapshot/cri.image-ref': 'example.com/x:1',
    'containerd.io/snapshot/cri.layer-digest': 'sha256:l',
    'containerd.io/snapshot/cri.image-layers': 'sha256:l',
  }))
  t.equal(s.fs.mountCalls[0]?.layer.imageRef, 'example.com/x:1')
})

t.test('restart re-mounts remote snapshots and sweeps orphans', async (t) => {
  const s = await setup(t)
  await t.rejects(s.sn.prepare(ns, 'k', '', stargzLabels('sha256:c', 'sha256:l')))
  await s.sn.prepare(ns, 'active', 'sha256:c', {})
  await mkdir(join(s.root, 'snapshots', 'new-crashed', 'fs'), { recursive: true })
  await mkdir(join(s.root, 'snapshots', '999'))
  const before = s.fs.mountCalls.length
  const sn = await s.reopen()
  const report = await sn.restore()
  t.same(report.restored, ['sha256:c'])
  t.equal(s.fs.mountCalls.length, before + 1)
  const dirs = (await readdir(join(s.root, 'snapshots'))).sort()
  t.same(dirs, ['1', '2'], 'orphans removed, live dirs kept')
  await sn.mounts(ns, 'active')
})

t.test('restore failures are reported, not fatal', async (t) => {
  const s = await setup(t)
  await t.rejects(s.sn.prepare(ns, 'k', '', stargzLabels('sha256:c', 'sha256:l')))
  s.fs.failDigests.add('sha256:l')
  const sn = await s.reopen()
  const report = await sn.restore()
  t.equal(report.failed.length, 1)
  t.ok(s.lines.some((l) => l.msg === 'remote-snapshot-restore-failed'))
})

t.test('removing a remote snapshot unmounts it', async (t) => {
  const s = await setup(t)
  await t.rejects(s.sn.prepare(ns, 'k', '', stargzLabels('sha256:c', 'sha256:l')))
  await s.sn.remove(ns, 'sha256:c')
  t.equal(s.fs.unmounts.length, 1)
  t.same(await readdir(join(s.root, 'snapshots')), [])
})

t.test('namespaces: same key in two namespaces; no-namespace remove (GC) removes both', async (t) => {
  const s = await setup(t)
  await s.sn.prepare({ namespace: 'a' }, 'k', '', {})
  await s.sn.prepare({ namespace: 'b' }, 'k', '', {})
  t.equal(s.sn.list({ namespace: 'a' }, []).length, 1)
  t.equal(s.sn.list({}, []).length, 2)
  t.equal(await errCode(() => s.sn.stat({}, 'k')), 'ERR_FAILED_PRECONDITION', 'ambiguous without a namespace')
  await s.sn.remove({}, 'k')
  t.equal(s.sn.list({}, []).length, 0)
})

t.test('new upper dir takes the parent root owner', async (t) => {
  const s = await setup(t)
  const m = await s.sn.prepare(ns, 'base', '', {})
  const { chown } = await import('node:fs/promises')
  await chown(m[0]?.source as string, 1234, 5678)
  await s.sn.commit(ns, 'base-c', 'base', {})
  const m2 = await s.sn.prepare(ns, 'child', 'base-c', {})
  const up = m2[0]?.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length) as string
  const st = await stat(up)
  t.equal(st.uid, 1234)
  t.equal(st.gid, 5678)
})
