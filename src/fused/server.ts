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

/** The part of src/fuseproto's backend the server talks to: held connections across restarts. */
export interface HeldMounts {
  /** Remember what a mount at `mountpoint` serves, for whoever adopts it after a crash. */
  describe(mountpoint: string, meta: Record<string, unknown>): void
  /** Let go of a held connection (after an unmount, or one that is no longer mounted). */
  drop(mountpoint: string): Promise<void>
}

export interface FusedServerOptions {
  socket: string
  fs: FileSystem
  log: Logger
  held?: HeldMounts
  /** Delay between attempts to re-serve a held connection (ms; doubles up to 5 s). */
  restoreRetryMs?: number
}

export class FusedServer {
  private readonly served = new Map<string, MountState>()
  /** Mounts in progress, so a second mount of the same mountpoint waits for the first. */
  private readonly pending = new Map<string, Promise<void>>()
  /** Held connections being re-served after a restart of this process (aborted by an unmount). */
  private readonly restoring = new Map<string, AbortController>()
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
        // Being re-served after our restart: the kernel mount is alive and its reads wait for us.
        if (this.restoring.has(req.mountpoint)) return undefined
        await this.o.fs.check(req.mountpoint, req.layer)
        return undefined
      }
      case 'unmount': {
        this.restoring.get(req.mountpoint)?.abort(new FailedPreconditionError(`${req.mountpoint} unmounted while being restored`))
        await this.pending.get(req.mountpoint)?.catch(() => undefined)
        await this.o.fs.unmount(req.mountpoint)
        await this.o.held?.drop(req.mountpoint)
        this.served.delete(req.mountpoint)
        return undefined
      }
      default: throw new InvalidArgumentError(`unknown fused operation ${JSON.stringify((req as { op: unknown }).op)}`)
    }
  }

  private async mount(mountpoint: string, layer: RemoteLayerInfo, signal: AbortSignal): Promise<MountResult> {
    const restoring = this.served.get(mountpoint)
    if (this.restoring.has(mountpoint) && restoring?.layerDigest === layer.layerDigest) return { attached: true }
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
    this.o.held?.describe(mountpoint, describeLayer(layer))
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

  /**
   * Serve again a connection an earlier stargz-fused left in the fd holder: listed as served at
   * once (so a control daemon keeps it), mounted through the FileSystem — whose backend adopts the
   * held fd — and retried with backoff until it works (registry down: reads wait meanwhile) or
   * the layer is unmounted.
   */
  restore(mountpoint: string, layer: RemoteLayerInfo): Promise<void> {
    this.served.set(mountpoint, { mountpoint, layerDigest: layer.layerDigest, imageRef: layer.imageRef })
    const ac = new AbortController()
    this.restoring.set(mountpoint, ac)
    const started = performance.now()
    const p = (async () => {
      let wait = this.o.restoreRetryMs ?? 250
      for (let attempt = 1; ; attempt++) {
        try {
          await this.o.fs.mount(mountpoint, layer, ac.signal)
          this.o.log.info({ mountpoint, digest: layer.layerDigest, attempt, ms: Math.round(performance.now() - started) }, 'fused-layer-restored')
          return
        } catch (e) {
          if (ac.signal.aborted) throw e
          this.o.log.warn({ mountpoint, digest: layer.layerDigest, attempt, err: errorMessage(e) }, 'fused-layer-restore-failed; retrying')
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, wait)
            ac.signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
          })
          wait = Math.min(wait * 2, 5000)
          if (ac.signal.aborted) throw ac.signal.reason
        }
      }
    })()
    this.pending.set(mountpoint, p)
    const done = p.finally(() => {
      this.pending.delete(mountpoint)
      this.restoring.delete(mountpoint)
    })
    done.catch(() => this.served.delete(mountpoint))
    return done
  }

  get restoringCount(): number { return this.restoring.size }

  /**
   * Give up every restore still in progress (a stop): their kernel mounts are not in the
   * FileSystem's table, so the caller unmounts them; returns their mountpoints.
   */
  async abortRestores(): Promise<string[]> {
    const mps = [...this.restoring.keys()]
    for (const ac of this.restoring.values()) ac.abort(new FailedPreconditionError('stargz-fused is stopping'))
    for (const mp of mps) await this.pending.get(mp)?.catch(() => undefined)
    return mps
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

/** What a held connection needs to be served again: the RemoteLayerInfo, as JSON. */
function describeLayer(l: RemoteLayerInfo): Record<string, unknown> {
  return { layer: l }
}
