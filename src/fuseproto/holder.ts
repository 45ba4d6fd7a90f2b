/**
 * The fd holder: a small long-lived process that keeps a copy of every /dev/fuse connection fd of
 * stargz-fused, so a kill -9, crash or upgrade of stargz-fused does not end the connections (the
 * kernel keeps a FUSE connection while any fd of it is open; its requests just wait).
 *
 * Node cannot pass fds over a unix socket, so fds move by pidfd_getfd (native/fusefd.c): the
 * holder copies the server's fd (`hold`), a new server copies the holder's (`list` gives the fd
 * numbers). The holder never reads the fds.
 *
 * It also keeps, beside each fd, what the server needs to serve it again (mountpoint, layer
 * digest, image ref, TOC digest): the mount list lives exactly as long as the connections it
 * describes, so it cannot go stale the way a file could after a reboot or an unclean unmount.
 *
 * Wire: one JSON request per connection, one JSON line back (`{ok, result}` / `{ok:false, error}`).
 */
import { closeSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { rm } from 'node:fs/promises'
import type { Logger } from 'pino'
import { InvalidArgumentError, UnavailableError, errorMessage } from '../errors.js'
import { LineSplitter } from '../fused/protocol.js'
import { loadFuseFd } from './native.js'

export interface HeldConnection {
  /** The mountpoint. */
  key: string
  /** The fd number in the holder process. */
  fd: number
  meta: Record<string, unknown> & { layerDigest?: string }
  heldAt: string
}

export interface HolderList { pid: number; entries: HeldConnection[] }

type HolderRequest =
  | { op: 'hello' }
  | { op: 'hold'; key: string; pid: number; fd: number; meta: Record<string, unknown> }
  | { op: 'list' }
  | { op: 'drop'; key: string }

export class HolderServer {
  private readonly held = new Map<string, HeldConnection>()
  private server: Server | undefined

  private constructor(private readonly socket: string, private readonly log: Logger) {}

  static async listen(socket: string, log: Logger): Promise<HolderServer> {
    const h = new HolderServer(socket, log)
    await rm(socket, { force: true })
    h.server = createServer((s) => h.accept(s))
    await new Promise<void>((resolve, reject) => {
      h.server?.once('error', reject)
      h.server?.listen(socket, () => { h.server?.off('error', reject); resolve() })
    })
    return h
  }

  get size(): number { return this.held.size }

  private accept(sock: Socket): void {
    const lines = new LineSplitter((line) => {
      let res: unknown
      try {
        res = { ok: true, result: this.handle(JSON.parse(line) as HolderRequest) }
      } catch (e) {
        res = { ok: false, error: errorMessage(e) }
      }
      sock.end(`${JSON.stringify(res)}\n`)
    })
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => { try { lines.push(d) } catch { sock.destroy() } })
    sock.on('error', () => undefined)
  }

  private handle(req: HolderRequest): unknown {
    switch (req.op) {
      case 'hello': return { pid: process.pid, held: this.held.size }
      case 'list': return { pid: process.pid, entries: [...this.held.values()] } satisfies HolderList
      case 'hold': {
        const fd = loadFuseFd().getfd(req.pid, req.fd)
        this.closeKey(req.key)
        this.held.set(req.key, { key: req.key, fd, meta: req.meta, heldAt: new Date().toISOString() })
        this.log.info({ key: req.key, fromPid: req.pid, fromFd: req.fd, fd }, 'fd-held')
        return { fd }
      }
      case 'drop': {
        const had = this.closeKey(req.key)
        if (had) this.log.info({ key: req.key }, 'fd-dropped')
        return { dropped: had }
      }
      default: throw new InvalidArgumentError(`unknown fd-holder operation ${JSON.stringify((req as { op: unknown }).op)}`)
    }
  }

  private closeKey(key: string): boolean {
    const e = this.held.get(key)
    if (!e) return false
    this.held.delete(key)
    try { closeSync(e.fd) } catch { /* gone already */ }
    return true
  }

  /** Stop listening and close every held fd (connections no server holds then end). */
  async close(): Promise<void> {
    for (const k of [...this.held.keys()]) this.closeKey(k)
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve())
    await rm(this.socket, { force: true }).catch(() => undefined)
  }
}

export class HolderClient {
  constructor(readonly socket: string, private readonly timeoutMs = 10_000) {}

  private call<T>(req: HolderRequest): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const sock = connect(this.socket)
      let settled = false
      const done = (err: Error | undefined, v?: T): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        sock.destroy()
        if (err) reject(err)
        else resolve(v as T)
      }
      const timer = setTimeout(() => done(new UnavailableError(`fd holder at ${this.socket} did not answer ${req.op} within ${this.timeoutMs} ms`)), this.timeoutMs)
      const lines = new LineSplitter((line) => {
        const r = JSON.parse(line) as { ok: boolean; result?: T; error?: string }
        if (r.ok) done(undefined, r.result)
        else done(new UnavailableError(`fd holder ${req.op}: ${r.error ?? 'failed'}`))
      })
      sock.setEncoding('utf8')
      sock.on('data', (d: string) => { try { lines.push(d) } catch (e) { done(e as Error) } })
      sock.on('error', (e) => done(new UnavailableError(`fd holder at ${this.socket}: ${e.message}`, { cause: e })))
      sock.on('close', () => done(new UnavailableError(`fd holder at ${this.socket} closed without answering ${req.op}`)))
      sock.write(`${JSON.stringify(req)}\n`)
    })
  }

  hello(): Promise<{ pid: number; held: number }> { return this.call({ op: 'hello' }) }
  list(): Promise<HolderList> { return this.call({ op: 'list' }) }
  hold(key: string, pid: number, fd: number, meta: Record<string, unknown>): Promise<{ fd: number }> {
    return this.call({ op: 'hold', key, pid, fd, meta })
  }
  drop(key: string): Promise<{ dropped: boolean }> { return this.call({ op: 'drop', key }) }
}
