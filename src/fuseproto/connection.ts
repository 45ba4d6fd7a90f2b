/**
 * One FUSE connection: a /dev/fuse fd we own, a reader thread (native/fusefd.c) that hands each
 * request to the event loop, INIT negotiation, and replies written with one writev each.
 *
 * The fd is either fresh (we mounted it: the kernel's first request is INIT) or adopted from a
 * previous server through the fd holder (INIT happened long ago: the parameters it settled are
 * ours and deterministic, so nothing needs re-negotiating). On adoption `notifyResend()` asks the
 * kernel to queue again every request the dead server had read but not answered.
 *
 * Owns the fd: closed once the reader has stopped (the connection ended) or by close().
 */
import { closeSync, writevSync } from 'node:fs'
import type { Logger } from 'pino'
import { constants } from 'node:os'
import { loadFuseFd } from './native.js'
import {
  FUSE_KERNEL_VERSION, FUSE_NOTIFY_RESEND, FUSE_OUR_MINOR, IN_HEADER_SIZE, InitFlag, NO_REPLY, Op,
  encodeInitOut, encodeNotify, encodeOutHeader, parseInHeader, parseInitIn, type InHeader,
} from './wire.js'

const E = constants.errno

/** What serves the filesystem requests of a connection (everything but INIT/DESTROY). */
export interface FuseHandler {
  /** Answer `req` exactly once through conn.reply (unless it is in NO_REPLY); never throw. */
  dispatch(req: InHeader, buf: Buffer, conn: FuseConnection): void
}

export interface ConnectionTuning {
  /** Largest WRITE payload we accept; reads of the device need this plus header room. Default 128 KiB. */
  maxWrite?: number
  /** Largest request in pages (READ size); 256 pages = 1 MiB. */
  maxPages?: number
  /** Async (read-ahead) requests the kernel may have outstanding. */
  maxBackground?: number
}

export interface ConnectionStats { requests: number; replies: number; replyErrors: number; resent: number }

export class FuseConnection {
  readonly stats: ConnectionStats = { requests: 0, replies: 0, replyErrors: 0, resent: 0 }
  /** Resolves when INIT has been answered (at once for an adopted connection). */
  readonly ready: Promise<void>
  /** Resolves with the errno the reader stopped on (ENODEV: unmounted or aborted). */
  readonly ended: Promise<number>
  private resolveReady!: () => void
  private rejectReady!: (e: Error) => void
  private resolveEnded!: (errno: number) => void
  private started = false
  private fdClosed = false
  private readonly maxWrite: number

  constructor(readonly fd: number, private readonly handler: FuseHandler, private readonly log: Logger, private readonly tuning: ConnectionTuning = {}) {
    this.maxWrite = tuning.maxWrite ?? 128 * 1024
    this.ready = new Promise<void>((resolve, reject) => { this.resolveReady = resolve; this.rejectReady = reject })
    this.ready.catch(() => undefined)
    this.ended = new Promise<number>((resolve) => { this.resolveEnded = resolve })
  }

  /** Start reading. `adopted`: the connection was initialised by an earlier server. */
  start(adopted: boolean): void {
    if (this.started) return
    this.started = true
    if (adopted) this.resolveReady()
    // The kernel refuses reads smaller than max_write plus the header of a WRITE request.
    const bufSize = this.maxWrite + 8192
    loadFuseFd().startReader(this.fd, bufSize, (buf, errno) => {
      if (buf === null) {
        this.log.debug({ errno }, 'fuse-connection-ended')
        this.rejectReady(new Error(`FUSE connection ended before INIT (errno ${errno})`))
        this.closeFd()
        this.resolveEnded(errno)
        return
      }
      this.onRequest(buf)
    })
  }

  private onRequest(buf: Buffer): void {
    if (buf.length < IN_HEADER_SIZE) return
    const h = parseInHeader(buf)
    this.stats.requests++
    if ((h.uniqueHi & 0x80000000) !== 0) {
      // A request the previous server had read and never answered, queued again by the kernel.
      if (this.stats.resent++ === 0) this.log.info({ opcode: h.opcode }, 'fuse-resent-request-served')
    }
    try {
      if (h.opcode === Op.INIT) return this.init(h, buf)
      if (h.opcode === Op.DESTROY) return this.reply(h, 0)
      this.handler.dispatch(h, buf, this)
    } catch (e) {
      this.log.error({ err: e, opcode: h.opcode }, 'fuse-dispatch-failed')
      if (!NO_REPLY.has(h.opcode)) this.reply(h, -E.EIO)
    }
  }

  private init(h: InHeader, buf: Buffer): void {
    const i = parseInitIn(buf)
    if (i.major !== FUSE_KERNEL_VERSION) {
      this.log.error({ major: i.major }, 'fuse-major-version-unsupported')
      this.reply(h, -E.EPROTO)
      this.rejectReady(new Error(`kernel FUSE protocol ${i.major}.${i.minor} is not 7.x`))
      return
    }
    const want = InitFlag.ASYNC_READ | InitFlag.BIG_WRITES | InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES | InitFlag.CACHE_SYMLINKS
    const out = encodeInitOut({
      minor: Math.min(i.minor, FUSE_OUR_MINOR),
      maxReadahead: i.maxReadahead,
      flags: (i.flags & want) >>> 0,
      flags2: 0,
      maxBackground: this.tuning.maxBackground ?? 64,
      congestionThreshold: Math.floor(((this.tuning.maxBackground ?? 64) * 3) / 4),
      maxWrite: this.maxWrite,
      timeGran: 1,
      maxPages: this.tuning.maxPages ?? 256,
    })
    this.reply(h, 0, out)
    this.log.debug({ kernel: `${i.major}.${i.minor}`, minor: Math.min(i.minor, FUSE_OUR_MINOR) }, 'fuse-init')
    this.resolveReady()
  }

  /** One reply: header plus payload in a single writev, as /dev/fuse requires. */
  reply(h: InHeader, error: number, ...payload: Buffer[]): void {
    let len = 0
    for (const p of payload) len += p.length
    const hdr = encodeOutHeader(h, error, error === 0 ? len : 0)
    this.write(error === 0 ? [hdr, ...payload] : [hdr])
    this.stats.replies++
  }

  /** Ask the kernel to queue again the requests read but never answered (by a dead server). */
  notifyResend(): void {
    this.write([encodeNotify(FUSE_NOTIFY_RESEND)])
  }

  private write(bufs: Buffer[]): void {
    if (this.fdClosed) return
    try {
      writevSync(this.fd, bufs)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      // ENOENT: the request was interrupted and is gone; ENODEV: the connection ended.
      if (code === 'ENOENT' || code === 'ENODEV') return
      this.stats.replyErrors++
      this.log.warn({ err: e }, 'fuse-reply-failed')
    }
  }

  private closeFd(): void {
    if (this.fdClosed) return
    this.fdClosed = true
    try { closeSync(this.fd) } catch { /* already closed */ }
  }

  /**
   * Close our fd. The reader thread may still be blocked in read(2) on it; it ends when the
   * connection does (unmount). Only for a connection that is over or was never mounted.
   */
  close(): void {
    this.closeFd()
  }
}
