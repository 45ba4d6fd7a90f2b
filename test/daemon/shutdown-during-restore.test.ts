/**
 * Regression (issue #9 §1): SIGTERM while restore is re-mounting layers returned early from
 * start-up and process.exit cut off the work in progress. Now the daemon stops restore from
 * starting new mounts, waits for the one in progress (here: a registry that never answers, so
 * the mount runs into its deadline), and only then releases and exits 0.
 */
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TARGET_SNAPSHOT_LABEL } from '../../src/snapshot/labels.js'
import { Snapshotter } from '../../src/snapshot/snapshotter.js'
import { FakeFileSystem, captureLogger } from '../snapshot/fake-fs.js'
import { startStargzd } from '../../harness/stargzd.js'

t.test('SIGTERM during restore: the mount in progress settles before the daemon stops, exit 0', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sgd-stop-restore-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // A "registry" that accepts connections and never answers.
  const sockets = new Set<Socket>()
  let connected!: () => void
  const firstConnection = new Promise<void>((resolve) => { connected = resolve })
  const hole = createServer((s) => { sockets.add(s); connected() })
  await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); hole.close() })
  const port = (hole.address() as { port: number }).port

  // A remote snapshot recorded by an earlier run (made with the fake filesystem).
  const root = join(dir, 'root')
  const { log } = captureLogger()
  const fake = new FakeFileSystem()
  const sn = await Snapshotter.open({ root, fs: fake, log, mountTimeoutMs: 5000, overlay: { indexOff: true, userxattr: false } })
  await sn.prepare({ namespace: 'default' }, 'extract-1', '', {
    [TARGET_SNAPSHOT_LABEL]: 'sha256:chain',
    'containerd.io/snapshot/remote/stargz.reference': `127.0.0.1:${port}/img:1`,
    'containerd.io/snapshot/remote/stargz.digest': 'sha256:' + 'ab'.repeat(32),
    'containerd.io/snapshot/stargz/toc.digest': 'sha256:' + 'cd'.repeat(32),
  }).catch(() => undefined)
  await sn.close()

  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'mount_timeout_sec = 2\n')
  const p = await startStargzd(['--config', cfg, '--root', root, '--address', join(dir, 's.sock')])
  t.teardown(() => p.close())
  await firstConnection // restore is mounting the layer now
  p.child.kill('SIGTERM')
  const r = await p.exited()
  t.equal(r.code, 0, 'exit 0')
  const msgs = p.logs.map((l) => l.msg)
  const failed = msgs.indexOf('remote-snapshot-restore-failed')
  const stopped = msgs.indexOf('stopped')
  t.ok(failed >= 0, 'the mount in progress ran to its deadline')
  t.ok(stopped > failed, 'and only then did the daemon stop')
  // Readiness no longer waits for restore (issue #11), so whether `ready` came before the signal is a race.
  // Where the shutdown time goes (reported, not asserted).
  const at = (m: string): number => {
    const v = p.logs.find((l) => l.msg === m)?.time
    return typeof v === 'number' ? v : Date.parse(String(v))
  }
  t.comment(`SIGTERM → restore settled ${at('remote-snapshot-restore-failed') - at('shutting down')} ms; → stopped ${at('stopped') - at('shutting down')} ms`)
})
