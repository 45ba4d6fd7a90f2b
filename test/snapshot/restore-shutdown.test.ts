/**
 * Shutdown during restore (issue #9 §1): a stop signal keeps restore from starting new mounts,
 * restore waits for the mounts in progress, and close() afterwards unmounts every one of them —
 * nothing is mounted behind the snapshotter's back.
 */
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { TARGET_SNAPSHOT_LABEL } from '../../src/snapshot/labels.js'
import { Snapshotter } from '../../src/snapshot/snapshotter.js'
import { FakeFileSystem, captureLogger } from './fake-fs.js'

const OVERLAY = { indexOff: true, userxattr: false }
const labels = (i: number): Record<string, string> => ({
  [TARGET_SNAPSHOT_LABEL]: `sha256:chain${i}`,
  'containerd.io/snapshot/remote/stargz.reference': '127.0.0.1:5000/img:1',
  'containerd.io/snapshot/remote/stargz.digest': `sha256:layer${i}`,
  'containerd.io/snapshot/stargz/toc.digest': 'sha256:toc',
})

t.test('a stop during restore: no new mounts, the ones in progress finish, close unmounts them all', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'sgd-restore-stop-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const { log, lines } = captureLogger()
  const fs = new FakeFileSystem()
  let sn = await Snapshotter.open({ root, fs, log, mountTimeoutMs: 60_000, overlay: OVERLAY })
  for (let i = 0; i < 6; i++) await sn.prepare({ namespace: 'default' }, `extract-${i}`, '', labels(i)).catch(() => undefined)
  t.equal(fs.mounted.size, 6)
  await sn.close()
  t.equal(fs.mounted.size, 0)

  // Restart: every mount is held until we let go.
  let open!: () => void
  fs.gate = new Promise<void>((resolve) => { open = resolve })
  fs.mountCalls.length = 0
  sn = await Snapshotter.open({ root, fs, log, mountTimeoutMs: 60_000, overlay: OVERLAY })
  const stop = new AbortController()
  const restoring = sn.restore(stop.signal)
  for (let i = 0; i < 1000 && fs.mountCalls.length < 4; i++) await sleep(10)
  t.equal(fs.mountCalls.length, 4, 'four mounts in progress (restore runs four at a time)')
  stop.abort()
  open()
  const report = await restoring
  t.equal(report.restored.length, 4, 'the mounts in progress finished')
  t.equal(fs.mountCalls.length, 4, 'no mount started after the stop')
  t.ok(lines.some((l) => l.msg === 'restore stopped by shutdown'))
  t.equal(fs.mounted.size, 4)
  await sn.close()
  t.equal(fs.mounted.size, 0, 'close unmounted every mount restore made')
})
