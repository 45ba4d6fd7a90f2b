/**
 * stargz-fused's socket side: serves the protocol in ./protocol.ts over a unix socket for any
 * number of control daemons in turn (a restarted stargzd simply connects again), on top of a
 * FileSystem that does the real FUSE mounts.
 *
 * A control daemon that goes away (kill -9, SIGTERM, upgrade) changes nothing here: mounts belong
 * to this process and are served until an explicit unmount or until this process is stopped.
 * `mount` of a mountpoint that is already served for the same layer answers `attached: true`
 * without touching the registry: that is how a restarted daemon re-attaches.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { rm } from 'node:fs/promises'
import type { Logger } from 'pino'
import { FailedPreconditionError, InvalidArgumentError, errorMessage } from '../errors.js'
import { isMounted } from '../fuse/unmount.js'
import type { FileSystem, RemoteLayerInfo } from '../snapshot/filesystem.js'
import {
  LineSplitter, PROTOCOL_VERSION, toWireError,
  type HelloResult, type MountResult, type MountState, type Request, type Response, type StateResult,
} from './protocol.js'

export interface FusedServerOptions {
  socket: string
  fs: FileSystem
  log: Logger
}

export class FusedServer {
  private readonly served = new Map<string, MountState>()
  /** Mounts in progress, so a second mount of the same mountpoint waits for the first. */
  private readonly pending = new Map<string, Promise<void>>()
  private readonly sockets = new Set<Socket>()
  private readonly startedAt = new Date().toISOString()
  private server: Server | undefined
  private closing: Promise<void> | undefined

  private constructor(private readonly o: FusedServerOptions) {}

  static async listen(o: FusedServerOptions): Promise<FusedServer> {
    const s = new FusedServer(o)
    // A socket file left by a previous (dead) server would make listen fail with EADDRINUSE.
    await rm(o.socket, { force: true })
    s.server = createServer((sock) => s.accept(sock))
    await new Promise<void>((resolve, reject) => {
      s.server?.once('error', reject)
      s.server?.listen(o.socket, () => { s.server?.off('error', reject); resolve() })
    })
    return s
  }

  get mounts(): readonly MountState[] { return [...this.served.values()] }

  private accept(sock: Socket): void {
    this.sockets.add(sock)
    const aborts = new Map<number, AbortController>()
    const send = (r: Response): void => { if (!sock.destroyed) sock.write(`${JSON.stringify(r)}\n`) }
    const lines = new LineSplitter((line) => {
      let req: Request
      try {
        req = JSON.parse(line) as Request
      } catch {
        sock.destroy()
        return
      }
      if (req.op === 'cancel') {
        aborts.get(req.target)?.abort(new FailedPreconditionError('mount cancelled by the control daemon'))
        return
      }
      const ac = new AbortController()
      aborts.set(req.id, ac)
      this.handle(req, ac.signal).then(
        (result) => send({ id: req.id, ok: true, result }),
        (e: unknown) => send({ id: req.id, ok: false, error: toWireError(e) }),
      ).finally(() => aborts.delete(req.id))
    })
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => {
      try { lines.push(d) } catch { sock.destroy() }
    })
    // The control daemon went away: in-flight mounts it asked for still finish and stay served
    // (the next daemon attaches to them or removes them); nothing else to do.
    sock.on('close', () => this.sockets.delete(sock))
    sock.on('error', () => undefined)
  }

  private async handle(req: Request, signal: AbortSignal): Promise<unknown> {
    switch (req.op) {
      case 'hello': return { version: PROTOCOL_VERSION, pid: process.pid, startedAt: this.startedAt } satisfies HelloResult
      case 'state': return { mounts: this.mounts.slice() } satisfies StateResult
      case 'mount': return this.mount(req.mountpoint, req.layer, signal)
      case 'check': {
        if (!this.served.has(req.mountpoint)) throw new FailedPreconditionError(`stargz-fused serves nothing at ${req.mountpoint}`)
        await this.o.fs.check(req.mountpoint, req.layer)
        return undefined
      }
      case 'unmount': {
        await this.pending.get(req.mountpoint)?.catch(() => undefined)
        await this.o.fs.unmount(req.mountpoint)
        this.served.delete(req.mountpoint)
        return undefined
      }
      default: throw new InvalidArgumentError(`unknown fused operation ${JSON.stringify((req as { op: unknown }).op)}`)
    }
  }

  private async mount(mountpoint: string, layer: RemoteLayerInfo, signal: AbortSignal): Promise<MountResult> {
    await this.pending.get(mountpoint)?.catch(() => undefined)
    const have = this.served.get(mountpoint)
    if (have) {
      if (have.layerDigest !== layer.layerDigest) throw new FailedPreconditionError(`${mountpoint} already serves layer ${have.layerDigest}, not ${layer.layerDigest}`)
      // Still a live mount? (someone may have unmounted it behind our back)
      if (await isMounted(mountpoint).catch(() => false)) return { attached: true }
      await this.o.fs.unmount(mountpoint).catch(() => undefined)
      this.served.delete(mountpoint)
    }
    signal.throwIfAborted()
    const p = this.o.fs.mount(mountpoint, layer, signal)
    this.pending.set(mountpoint, p)
    try {
      await p
    } finally {
      this.pending.delete(mountpoint)
    }
    this.served.set(mountpoint, { mountpoint, layerDigest: layer.layerDigest, imageRef: layer.imageRef })
    this.o.log.info({ mountpoint, digest: layer.layerDigest }, 'fused-layer-served')
    return { attached: false }
  }

  /** Stop listening; mounts stay (the caller unmounts them through its FileSystem if it means to). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const s of this.sockets) s.destroy()
      await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve())
      await rm(this.o.socket, { force: true }).catch((e: unknown) => this.o.log.debug({ err: errorMessage(e) }, 'removing fused socket'))
    })()
    return this.closing
  }
}
