/**
 * stargzd ↔ stargz-fused over a real unix socket, with a recording FileSystem behind the server
 * (the FUSE side is covered by containers-survive.test.ts): re-attach, typed errors across the
 * wire, cancel, detach on daemon shutdown, reconnect to a restarted server.
 */
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { FailedPreconditionError, NotFoundError, UnavailableError } from '../../src/errors.js'
import { FusedClient } from '../../src/fused/client.js'
import { FusedServer } from '../../src/fused/server.js'
import type { FileSystem, RemoteLayerInfo } from '../../src/snapshot/filesystem.js'

class RecordingFs implements FileSystem {
  calls: string[] = []
  hang = false
  async mount(mp: string, layer: RemoteLayerInfo, signal?: AbortSignal): Promise<void> {
    this.calls.push(`mount ${mp} ${layer.layerDigest}`)
    if (layer.layerDigest === 'sha256:missing') throw new NotFoundError(`blob ${layer.layerDigest} not found`)
    if (this.hang) {
      signal?.throwIfAborted()
      await new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason as Error)))
    }
  }
  async check(mp: string): Promise<void> { this.calls.push(`check ${mp}`) }
  async unmount(mp: string): Promise<void> { this.calls.push(`unmount ${mp}`) }
}

const layer = (d: string): RemoteLayerInfo => ({ imageRef: '127.0.0.1:1/x:y', layerDigest: d, labels: {} })

t.test('mount, re-attach, errors, cancel, detach, reconnect', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fused-proto-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const socket = join(dir, 'f.sock')
  const fs = new RecordingFs()
  const log = pino({ level: 'silent' })
  let server = await FusedServer.listen({ socket, fs, log })
  t.teardown(() => server.close())

  const c1 = new FusedClient(socket)
  t.equal((await c1.hello()).pid, process.pid, 'hello names the server pid')
  // '/proc' is always a mount point, so the server's "still mounted?" check holds for it.
  t.same(await c1.mountOrAttach('/proc', layer('sha256:a')), { attached: false }, 'first mount is a mount')
  await c1.close()

  // A "restarted daemon": a new client attaches to what is served, without calling the FileSystem.
  const c2 = new FusedClient(socket)
  t.teardown(() => c2.close())
  t.same(await c2.liveMounts(), ['/proc'], 'state lists the served layer')
  const before = fs.calls.length
  t.same(await c2.mountOrAttach('/proc', layer('sha256:a')), { attached: true }, 'second mount re-attaches')
  t.equal(fs.calls.length, before, 're-attach did not mount again')
  await t.rejects(c2.mount('/proc', layer('sha256:b')), FailedPreconditionError, 'another layer on a served mountpoint is refused')
  await t.rejects(c2.mount(join(dir, 'm'), layer('sha256:missing')), NotFoundError, 'typed errors cross the wire')
  await t.rejects(c2.check(join(dir, 'nothing'), layer('sha256:a')), FailedPreconditionError, 'check of an unserved mountpoint fails')
  await c2.check('/proc', layer('sha256:a'))

  fs.hang = true
  const ac = new AbortController()
  const hung = c2.mount(join(dir, 'slow'), layer('sha256:c'), ac.signal)
  setImmediate(() => ac.abort())
  await t.rejects(hung, FailedPreconditionError, 'an aborted mount is cancelled in the server')
  fs.hang = false

  c2.detach()
  await c2.unmount('/proc')
  t.notOk(fs.calls.includes('unmount /proc'), 'after detach(), unmount leaves the layer served')

  // stargz-fused restarted (upgrade): the same client reconnects on its next call.
  await server.close()
  await t.rejects(c2.state(), UnavailableError, 'no server: Unavailable')
  server = await FusedServer.listen({ socket, fs, log })
  t.same((await c2.state()).mounts, [], 'reconnected to the new server')
  const c3 = new FusedClient(socket)
  t.teardown(() => c3.close())
  await c3.mount('/proc', layer('sha256:a'))
  await c3.unmount('/proc')
  t.ok(fs.calls.includes('unmount /proc'), 'unmount reaches the FileSystem')
  t.same(await c3.liveMounts(), [], 'nothing served after unmount')
})
