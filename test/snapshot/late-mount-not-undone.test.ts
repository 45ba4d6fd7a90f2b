/**
 * Regression (issue #9 §4): a remote mount that landed after its deadline and could not be
 * undone was thrown as a plain ERR_TIMEOUT, the snapshotter only special-cased its own
 * MountTimeoutError, and containerd was handed the snapshot directory — with the mount still
 * on it — to unpack into. Now every timeout is a TimeoutError and `mayHoldMount` drops the
 * snapshot instead.
 */
import t from 'tap'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TimeoutError } from '../../src/errors.js'
import { TARGET_SNAPSHOT_LABEL } from '../../src/snapshot/labels.js'
import { mountWithDeadline } from '../../src/snapshot/remote-mount.js'
import { Snapshotter } from '../../src/snapshot/snapshotter.js'
import { FakeFileSystem, captureLogger } from './fake-fs.js'

const labels = {
  [TARGET_SNAPSHOT_LABEL]: 'sha256:chain',
  'containerd.io/snapshot/remote/stargz.reference': '127.0.0.1:5000/busybox:esgz',
  'containerd.io/snapshot/remote/stargz.digest': 'sha256:late',
  'containerd.io/snapshot/stargz/toc.digest': 'sha256:toc',
}

t.test('mountWithDeadline: a late mount that cannot be undone is a TimeoutError that may hold a mount', async (t) => {
  const fs = new FakeFileSystem()
  fs.landLate = true
  fs.failUnmount = true
  const dir = await mkdtemp(join(tmpdir(), 'sgd-late-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const err = await mountWithDeadline(fs, dir, { imageRef: 'r', layerDigest: 'sha256:late', labels: {} }, 20, 10_000).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof TimeoutError, 'a TimeoutError')
  t.equal((err as TimeoutError).mayHoldMount, true)
  t.equal((err as TimeoutError).mountpoint, dir)
  t.match((err as Error).message, /completed after its deadline .* could not be undone: .* is busy/)

  // Landed late but undone: a plain timeout, nothing left on the directory.
  fs.failUnmount = false
  await fs.unmount(dir)
  const undone = await mountWithDeadline(fs, dir, { imageRef: 'r', layerDigest: 'sha256:late', labels: {} }, 20, 10_000).then(() => undefined, (e: unknown) => e)
  t.ok(undone instanceof TimeoutError)
  t.equal((undone as TimeoutError).mayHoldMount, false)
  t.same(await readdir(dir), [])
})

t.test('prepare: the directory of a late mount that stayed is never handed to containerd', async (t) => {
  const fs = new FakeFileSystem()
  fs.landLate = true
  fs.failUnmount = true
  const root = await mkdtemp(join(tmpdir(), 'sgd-late-snap-'))
  const { log, lines } = captureLogger()
  const sn = await Snapshotter.open({ root, fs, log, mountTimeoutMs: 1000, overlay: { indexOff: true, userxattr: false } })
  t.teardown(async () => {
    fs.failUnmount = false
    await sn.close()
    await rm(root, { recursive: true, force: true })
  })
  const err = await sn.prepare({ namespace: 'default' }, 'extract-1', '', labels).then(() => undefined, (e: unknown) => e)
  t.equal((err as { code?: string })?.code, 'ERR_UNAVAILABLE', 'Prepare fails (containerd retries the pull) instead of answering mounts')
  t.match((err as Error).message, /may still be mounted/)
  t.same(sn.list({ namespace: 'default' }, []), [], 'the active snapshot was dropped')
  t.ok(lines.some((l) => l.msg === 'remote-snapshot-fallback'))
})
