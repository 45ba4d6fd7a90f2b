/**
 * Restore in the background (issue #11): startRestore() returns before any layer is mounted, so
 * the daemon can serve at once; Mounts/Prepare on a chain whose layer is still being restored wait
 * for it (up to waitMs, then Unavailable with the reason); a failed layer is retried with backoff
 * until it mounts; removing a restoring snapshot stops its retries and leaves nothing behind.
 */
import t, { type Test } from 'tap'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { UnavailableError } from '../../src/errors.js'
import { TARGET_SNAPSHOT_LABEL } from '../../src/snapshot/labels.js'
import { Snapshotter, type RestoreSettings } from '../../src/snapshot/snapshotter.js'
import { FakeFileSystem, captureLogger } from './fake-fs.js'

const OVERLAY = { indexOff: true, userxattr: false }
const ns = { namespace: 'default' }
const labels = (i: number): Record<string, string> => ({
  [TARGET_SNAPSHOT_LABEL]: `sha256:chain${i}`,
  'containerd.io/snapshot/remote/stargz.reference': '127.0.0.1:5000/img:1',
  'containerd.io/snapshot/remote/stargz.digest': `sha256:layer${i}`,
  'containerd.io/snapshot/stargz/toc.digest': 'sha256:toc',
})

/** A root with `n` remote snapshots and an active snapshot on top of the first, then a restart. */
async function restarted(t: Test, n: number, restore: Partial<RestoreSettings>, prime?: (fs: FakeFileSystem) => void) {
  const root = await mkdtemp(join(tmpdir(), 'sgd-bgrestore-'))
  const { log, lines } = captureLogger()
  const fs = new FakeFileSystem()
  let sn = await Snapshotter.open({ root, fs, log, mountTimeoutMs: 5000, overlay: OVERLAY })
  for (let i = 0; i < n; i++) await sn.prepare(ns, `extract-${i}`, '', labels(i)).catch(() => undefined)
  await sn.prepare(ns, 'ctr', 'sha256:chain0', {})
  await sn.close()
  prime?.(fs)
  sn = await Snapshotter.open({ root, fs, log, mountTimeoutMs: 5000, overlay: OVERLAY, restore })
  t.teardown(async () => { await sn.close(); await rm(root, { recursive: true, force: true }) })
  return { root, fs, lines, sn }
}

t.test('ready before the mounts: Mounts waits for the layer being restored', async (t) => {
  let open!: () => void
  const s = await restarted(t, 3, { waitMs: 60_000 }, (fs) => { fs.gate = new Promise<void>((resolve) => { open = resolve }) })
  const started = await s.sn.startRestore()
  t.equal(started.pending, 3, 'three layers to restore')
  t.equal(s.fs.mounted.size, 0, 'startRestore returned with nothing mounted yet')
  let answered = false
  const mounts = s.sn.mounts(ns, 'ctr').then((m) => { answered = true; return m })
  await sleep(100)
  t.notOk(answered, 'Mounts on the restoring chain waits')
  open()
  t.ok((await mounts).length > 0, 'and answers once the layer is back')
  const report = await started.firstPass
  t.equal(report.restored.length, 3)
})

t.test('a failed layer is retried with backoff until it mounts; Mounts waits through the retries', async (t) => {
  const s = await restarted(t, 2, { retryBaseMs: 20, retryMaxMs: 100, waitMs: 60_000 }, (fs) => fs.failDigests.add('sha256:layer0'))
  const started = await s.sn.startRestore()
  const report = await started.firstPass
  t.same(report.failed.map((f) => f.name), ['sha256:chain0'], 'the first attempt failed')
  const mounts = s.sn.mounts(ns, 'ctr')
  for (let i = 0; i < 200 && s.lines.filter((l) => l.msg === 'remote-snapshot-restore-failed').length < 3; i++) await sleep(10)
  const fails = s.lines.filter((l) => l.msg === 'remote-snapshot-restore-failed')
  t.ok(fails.length >= 3, `retried (${fails.length} failed attempts)`)
  t.ok(fails.every((l) => typeof l.retryMs === 'number'), 'each failure says when the next attempt is')
  const delays = fails.map((l) => Number(l.retryMs))
  t.same(delays.slice(0, 3), [20, 40, 80], 'the delay doubles')
  s.fs.failDigests.clear() // the registry is back
  t.ok((await mounts).length > 0, 'Mounts answered once a retry mounted the layer')
  t.ok(s.fs.mounted.has(join(s.root, 'snapshots', '1', 'fs')), 'mounted where the record says')
  t.ok(s.lines.some((l) => l.msg === 'remote-snapshot-restored' && Number(l.attempt) > 1), 'restored by a retry')
})

t.test('the wait has a deadline: Unavailable, naming the layer and the last error', async (t) => {
  const s = await restarted(t, 1, { retryBaseMs: 20, retryMaxMs: 50, waitMs: 300 }, (fs) => fs.failDigests.add('sha256:layer0'))
  await (await s.sn.startRestore()).firstPass
  let err: unknown
  try { await s.sn.mounts(ns, 'ctr') } catch (e) { err = e }
  t.ok(err instanceof UnavailableError, 'Unavailable')
  const msg = err instanceof Error ? err.message : ''
  t.match(msg, /still being restored after waiting 300 ms/, msg)
  t.match(msg, /sha256:layer0/)
  t.match(msg, /not eStargz/, 'with the last error')
})

t.test('removing a restoring snapshot stops its retries and leaves no dir or mount', async (t) => {
  const s = await restarted(t, 1, { retryBaseMs: 20, retryMaxMs: 20, waitMs: 60_000 }, (fs) => fs.failDigests.add('sha256:layer0'))
  await (await s.sn.startRestore()).firstPass
  await s.sn.remove(ns, 'ctr')
  await s.sn.remove(ns, 'sha256:chain0')
  const calls = s.fs.mountCalls.length
  s.fs.failDigests.clear()
  await sleep(150)
  t.equal(s.fs.mountCalls.length, calls, 'no attempt after the remove')
  t.equal(s.fs.mounted.size, 0, 'nothing mounted')
  t.same(await readdir(join(s.root, 'snapshots')), [], 'no snapshot dir left')
})

t.test('close stops the retries and lets a waiting Mounts go', async (t) => {
  const s = await restarted(t, 1, { retryBaseMs: 20, retryMaxMs: 20, waitMs: 60_000 }, (fs) => fs.failDigests.add('sha256:layer0'))
  await (await s.sn.startRestore()).firstPass
  const mounts = s.sn.mounts(ns, 'ctr').then(() => 'answered', (e: unknown) => (e as Error).message)
  await s.sn.close()
  t.match(await mounts, /shutting down/, 'the waiting call is answered Unavailable at close')
  const calls = s.fs.mountCalls.length
  await sleep(100)
  t.equal(s.fs.mountCalls.length, calls, 'no attempt after close')
})
