/**
 * SIGTERM must not hang on a dead registry (issue #11, noticed in round 2: stargzd took ~28 s to
 * exit with a registry that accepted connections and never answered). RegistryClient.close()
 * gives requests in flight a moment and then cuts them off: once close() has resolved, the
 * request it cut off has settled (with an error), instead of waiting for its own deadline.
 */
import t from 'tap'
import { createServer, type Socket } from 'node:net'
import { RegistryClient } from '../../src/registry/client.js'

t.test('close() cuts off a request to a registry that never answers', async (t) => {
  const sockets = new Set<Socket>()
  let connected!: () => void
  const first = new Promise<void>((resolve) => { connected = resolve })
  const hole = createServer((s) => { sockets.add(s); connected() })
  await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); hole.close() })
  const port = (hole.address() as { port: number }).port

  const client = new RegistryClient({ plainHttp: true, transport: { maxRetries: 0, requestDeadlineMs: 600_000, bodyTimeoutMs: 600_000 } })
  let settled: 'pending' | 'resolved' | 'rejected' = 'pending'
  const req = client.fetchManifest(`127.0.0.1:${port}/img:1`).then(() => { settled = 'resolved' }, () => { settled = 'rejected' })
  await first
  await client.close()
  await new Promise((r) => setImmediate(r))
  t.equal(settled, 'rejected', 'the request in flight was cut off by close(), not left to its 10-minute deadline')
  await req
})
