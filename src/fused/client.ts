/**
 * The control daemon's FileSystem when FUSE is served by stargz-fused: every call goes over the
 * unix socket (./protocol.ts). The connection is made lazily and again after it drops, so a
 * stargz-fused that restarts (upgrade) is picked up by the next call.
 *
 * `detach()` is for the daemon's own shutdown: from then on unmount() is a no-op, so stopping or
 * upgrading stargzd leaves every layer mounted and served for the running containers.
 */
import { connect, type Socket } from 'node:net'
import { UnavailableError } from '../errors.js'
import type { FileSystem, RemoteLayerInfo } from '../snapshot/filesystem.js'
import {
  LineSplitter, PROTOCOL_VERSION, fromWireError,
  type HelloResult, type MountResult, type Request, type Response, type StateResult,
} from './protocol.js'

type Pending = { resolve: (v: unknown) => void; reject: (e: unknown) => void }
type Op = Request extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never : never

export class FusedClient implements FileSystem {
  private sock: Socket | undefined
  private connecting: Promise<Socket> | undefined
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private detached = false
  private closed = false

  constructor(readonly socketPath: string) {}

  /** Connects (if needed) and checks the protocol version; rejects if nobody listens. */
  async hello(): Promise<HelloResult> {
    const h = (await this.call({ op: 'hello' })) as HelloResult
    if (h.version !== PROTOCOL_VERSION) throw new UnavailableError(`stargz-fused at ${this.socketPath} speaks protocol ${h.version}, we speak ${PROTOCOL_VERSION}`)
    return h
  }

  async mount(mountpoint: string, layer: RemoteLayerInfo, signal?: AbortSignal): Promise<void> {
    await this.mountOrAttach(mountpoint, layer, signal)
  }

  /** Like mount(); says whether the layer was already served (a re-attach after a restart). */
  async mountOrAttach(mountpoint: string, layer: RemoteLayerInfo, signal?: AbortSignal): Promise<MountResult> {
    signal?.throwIfAborted()
    return (await this.call({ op: 'mount', mountpoint, layer }, signal)) as MountResult
  }

  async check(mountpoint: string, layer: RemoteLayerInfo): Promise<void> {
    await this.call({ op: 'check', mountpoint, layer })
  }

  async unmount(mountpoint: string): Promise<void> {
    if (this.detached) return
    await this.call({ op: 'unmount', mountpoint })
  }

  /** Mountpoints stargz-fused serves now: the snapshotter must not detach these at restore. */
  async liveMounts(): Promise<string[]> {
    const s = (await this.call({ op: 'state' })) as StateResult
    return s.mounts.map((m) => m.mountpoint)
  }

  async state(): Promise<StateResult> {
    return (await this.call({ op: 'state' })) as StateResult
  }

  /** From now on unmount() leaves layers mounted (daemon shutdown: containers keep reading). */
  detach(): void {
    this.detached = true
  }

  /** Drop the connection; mounts stay with stargz-fused. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true
    this.detached = true
    this.sock?.destroy()
    this.sock = undefined
  }

  private call(op: Op, signal?: AbortSignal): Promise<unknown> {
    return this.socket().then((sock) => new Promise((resolve, reject) => {
      const id = this.nextId++
      const onAbort = (): void => {
        if (!sock.destroyed) sock.write(`${JSON.stringify({ id: this.nextId++, op: 'cancel', target: id })}\n`)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.pending.set(id, {
        resolve: (v) => { signal?.removeEventListener('abort', onAbort); resolve(v) },
        reject: (e) => { signal?.removeEventListener('abort', onAbort); reject(e) },
      })
      sock.write(`${JSON.stringify({ ...op, id })}\n`)
    }))
  }

  private socket(): Promise<Socket> {
    if (this.closed) return Promise.reject(new UnavailableError('fused client is closed'))
    if (this.sock && !this.sock.destroyed) return Promise.resolve(this.sock)
    this.connecting ??= new Promise<Socket>((resolve, reject) => {
      const sock = connect(this.socketPath)
      sock.setEncoding('utf8')
      const lines = new LineSplitter((line) => {
        const r = JSON.parse(line) as Response
        const p = this.pending.get(r.id)
        if (!p) return
        this.pending.delete(r.id)
        if (r.ok) p.resolve(r.result)
        else p.reject(fromWireError(r.error))
      })
      sock.on('data', (d: string) => lines.push(d))
      sock.once('connect', () => { this.sock = sock; resolve(sock) })
      sock.once('error', (e) => reject(new UnavailableError(`stargz-fused at ${this.socketPath} is not reachable: ${e.message}`, { cause: e })))
      sock.once('close', () => {
        if (this.sock === sock) this.sock = undefined
        // Calls in flight when stargz-fused went away: their outcome is unknown to us.
        for (const [id, p] of this.pending) {
          this.pending.delete(id)
          p.reject(new UnavailableError(`connection to stargz-fused at ${this.socketPath} was lost`))
        }
      })
    }).finally(() => { this.connecting = undefined })
    return this.connecting
  }
}
