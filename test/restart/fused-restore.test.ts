/**
 * FusedServer.restore(): a connection left in the fd holder by a dead stargz-fused is listed as
 * served at once (a control daemon keeps it), re-served through the FileSystem with retries while
 * that fails (registry down: the kernel keeps the reads waiting), and given up only on unmount.
 */
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { UnavailableError } from '../../src/errors.js'
import { FusedClient } from '../../src/fused/client.js'
import { FusedServer, type HeldMounts } from '../../src/fused/server.js'
import type { FileSystem, RemoteLayerInfo } from '../../src/snapshot/filesystem.js'

class FlakyFs implements FileSystem {
  mounts = 0
  failures = 2
  async mount(): Promise<void> {
    this.mounts++
    if (this.failures-- > 0) throw new UnavailableError('registry unreachable')
  }
  async check(): Promise<void> {}
  async unmount(): Promise<void> {}
}

class Held implements HeldMounts {
  described: string[] = []
  dropped: string[] = []
  describe(mp: string): void { this.described.push(mp) }
  async drop(mp: string): Promise<void> { this.dropped.push(mp) }
}

const layer: RemoteLayerInfo = { imageRef: '127.0.0.1:1/x:y', layerDigest: 'sha256:a', labels: {} }

t.test('restore retries until the FileSystem mounts, and the daemon sees the layer meanwhile', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fused-restore-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const socket = join(dir, 'f.sock')
  const fs = new FlakyFs()
  const held = new Held()
  const server = await FusedServer.listen({ socket, fs, log: pino({ level: 'silent' }), held, restoreRetryMs: 20 })
  t.teardown(() => server.close())
  const c = new FusedClient(socket)
  t.teardown(() => c.close())

  const done = server.restore('/proc', layer)
  t.same(await c.liveMounts(), ['/proc'], 'listed as served while restoring')
  t.same(await c.mountOrAttach('/proc', layer), { attached: true }, 'a daemon re-attaching does not wait for the restore')
  await c.check('/proc', layer)
  await done
  t.equal(fs.mounts, 3, 'two failures, then mounted')
  t.equal(server.restoringCount, 0)
  t.same(await c.mountOrAttach('/proc', layer), { attached: true }, 'served after the restore')
})

t.test('unmount gives up a restore that never succeeds, and drops the held fd', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fused-restore-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const socket = join(dir, 'f.sock')
  const fs = new FlakyFs()
  fs.failures = Number.POSITIVE_INFINITY
  const held = new Held()
  const server = await FusedServer.listen({ socket, fs, log: pino({ level: 'silent' }), held, restoreRetryMs: 20 })
  t.teardown(() => server.close())
  const c = new FusedClient(socket)
  t.teardown(() => c.close())
  const done = server.restore(join(dir, 'mnt'), layer)
  while (fs.mounts < 2) await new Promise((r) => setTimeout(r, 10))
  await c.unmount(join(dir, 'mnt'))
  await t.rejects(done, 'the restore ends')
  t.same(held.dropped, [join(dir, 'mnt')], 'the holder is told to drop it')
  t.same(await c.liveMounts(), [], 'no longer listed')
})
