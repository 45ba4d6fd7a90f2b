/**
 * The gRPC server on a unix socket. Owns the socket file: removes a stale one (nothing answers
 * on it) but refuses to steal one another live process listens on; mode 0660. close() stops
 * accepting calls, lets in-flight ones finish (bounded), then unlinks the socket. Safe twice.
 */
import { connect } from 'node:net'
import { chmod, lstat, mkdir, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import type { Logger } from '../log/logger.js'
import type { Snapshotter } from '../snapshot/snapshotter.js'
import { snapshotsServiceDefinition } from './proto.js'
import { snapshotsService } from './service.js'

export interface SnapshotServer {
  address: string
  /** Calls started and not yet answered. */
  inFlight(): number
  close(opts?: { graceMs?: number }): Promise<void>
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

export async function removeStaleSocket(path: string): Promise<void> {
  let st
  try {
    st = await lstat(path)
  } catch {
    return
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`)
  if (await answers(path)) throw new Error(`another process is listening on ${path}`)
  await rm(path, { force: true })
}

export async function startSnapshotServer(opts: { address: string; snapshotter: Snapshotter; log: Logger; socketMode?: number }): Promise<SnapshotServer> {
  const { address, log } = opts
  await mkdir(dirname(address), { recursive: true, mode: 0o711 })
  await removeStaleSocket(address)
  let inFlight = 0
  const drained: (() => void)[] = []
  const track = <T>(p: Promise<T>): Promise<T> => {
    inFlight++
    return p.finally(() => {
      inFlight--
      if (inFlight === 0) for (const f of drained.splice(0)) f()
    })
  }
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 })
  server.addService(snapshotsServiceDefinition(), snapshotsService(opts.snapshotter, log, { track }))
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix:${address}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()))
  })
  await chmod(address, opts.socketMode ?? 0o660)
  log.info({ address }, 'listening')
  let closing: Promise<void> | undefined
  return {
    address,
    inFlight: () => inFlight,
    close: (o = {}) => {
      closing ??= (async () => {
        const graceMs = o.graceMs ?? 30_000
        let timer: NodeJS.Timeout | undefined
        const idle = inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => drained.push(r))
        const shutdown = new Promise<void>((r) => server.tryShutdown(() => r()))
        const deadline = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), graceMs) })
        const outcome = await Promise.race([Promise.all([idle, shutdown]), deadline])
        clearTimeout(timer)
        if (outcome === 'timeout') {
          log.warn({ inFlight }, 'calls still running at shutdown deadline; cancelling them')
          server.forceShutdown()
        }
        await rm(address, { force: true })
      })()
      return closing
    },
  }
}
