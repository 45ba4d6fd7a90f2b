/**
 * Compresses independent gzip members on worker threads.
 *
 * Members of an eStargz blob are independent, so they can be compressed in parallel. Many members
 * are tiny (one small file = one member), and a thread-pool hop per member costs more than the
 * deflate itself, so members travel in batches: one message carries many members and returns
 * their gzip bytes. A worker also hashes a prefix of each member (the chunk bytes) so the main
 * thread only hashes what must be hashed in stream order.
 *
 * Each member is a complete gzip stream (RFC 1952) with MTIME 0 and OS = 255, like Go's
 * compress/gzip, so the output depends only on the input bytes and the level.
 */
import { Worker } from 'node:worker_threads'
import { StargzError } from '../errors.js'
import { ZSTD_BINDING_PATH } from './zstd-codec.js'

export interface MemberJob {
  /** The member's uncompressed bytes, in order. */
  parts: Buffer[]
  length: number
  /** sha256 the first `hashPrefix` bytes (0: none). */
  hashPrefix: number
}

export interface MemberResult {
  gz: Buffer
  /** "sha256:<hex>" of the first `hashPrefix` bytes, if asked for. */
  prefixDigest: string | undefined
}

interface WorkerRequest { id: number; level: number; codec: 'gzip' | 'zstd'; buf: ArrayBuffer; sizes: number[]; hashes: number[] }
interface WorkerReply { id: number; buf?: ArrayBuffer; sizes?: number[]; digests?: (string | null)[]; error?: string }

// Plain JS so it runs the same from sources (tsx) and from dist, with no file to locate.
// zstd:chunked members are one complete zstd frame each (content size in the header, as the
// reference's frames have), through zstd-napi's binding, loaded only when asked for.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const zlib = require('node:zlib')
const crypto = require('node:crypto')
let zstd
let cctx
function zstdFrame(data, level) {
  zstd ??= require(${JSON.stringify(ZSTD_BINDING_PATH)})
  // One context per worker, reused (a context per frame costs megabytes of native memory).
  cctx ??= new zstd.CCtx()
  const out = Buffer.allocUnsafe(zstd.compressBound(data.length))
  const n = cctx.compress(out, data, level)
  return out.subarray(0, n)
}
parentPort.on('message', (m) => {
  try {
    const input = Buffer.from(m.buf)
    const outs = []
    const digests = []
    let pos = 0
    let total = 0
    for (let i = 0; i < m.sizes.length; i++) {
      const data = input.subarray(pos, pos + m.sizes[i])
      pos += m.sizes[i]
      let gz
      if (m.codec === 'zstd') gz = zstdFrame(data, m.level)
      else {
        gz = zlib.gzipSync(data, { level: m.level, chunkSize: Math.max(16384, data.length + 1024) })
        gz[9] = 0xff
      }
      outs.push(gz)
      total += gz.length
      digests.push(m.hashes[i] > 0 ? 'sha256:' + crypto.createHash('sha256').update(data.subarray(0, m.hashes[i])).digest('hex') : null)
    }
    const out = new Uint8Array(total)
    let o = 0
    for (const g of outs) { out.set(g, o); o += g.length }
    parentPort.postMessage({ id: m.id, buf: out.buffer, sizes: outs.map((g) => g.length), digests }, [out.buffer])
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String(e && e.stack || e) })
  }
})
`

interface Pending { resolve(r: MemberResult[]): void; reject(e: unknown): void; worker: number }

export class GzipMemberPool {
  private readonly workers: Worker[] = []
  private readonly inflight: number[] = []
  private readonly pending = new Map<number, Pending>()
  private nextId = 0
  private closed = false
  private failure: unknown

  constructor(private readonly level: number, size: number, private readonly codec: 'gzip' | 'zstd' = 'gzip') {
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true })
      w.on('message', (m: WorkerReply) => this.onReply(i, m))
      w.on('error', (e) => this.failAll(e))
      w.on('exit', (code) => { if (!this.closed) this.failAll(new StargzError('ERR_UNAVAILABLE', `gzip worker exited with code ${code}`)) })
      this.workers.push(w)
      this.inflight.push(0)
    }
  }

  /** Batches currently being compressed. */
  get busy(): number {
    return this.pending.size
  }

  compress(jobs: MemberJob[]): Promise<MemberResult[]> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    if (this.closed) return Promise.reject(new StargzError('ERR_FAILED_PRECONDITION', 'gzip pool is closed'))
    let total = 0
    for (const j of jobs) total += j.length
    const buf = new Uint8Array(total)
    let pos = 0
    for (const j of jobs) for (const p of j.parts) { buf.set(p, pos); pos += p.length }
    let wi = 0
    for (let i = 1; i < this.workers.length; i++) if ((this.inflight[i] as number) < (this.inflight[wi] as number)) wi = i
    const id = this.nextId++
    const req: WorkerRequest = { id, level: this.level, codec: this.codec, buf: buf.buffer, sizes: jobs.map((j) => j.length), hashes: jobs.map((j) => j.hashPrefix) }
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: wi })
      this.inflight[wi] = (this.inflight[wi] as number) + 1
      ;(this.workers[wi] as Worker).postMessage(req, [buf.buffer])
    })
  }

  private onReply(wi: number, m: WorkerReply): void {
    const p = this.pending.get(m.id)
    if (!p) return
    this.pending.delete(m.id)
    this.inflight[wi] = (this.inflight[wi] as number) - 1
    if (m.error !== undefined || !m.buf || !m.sizes || !m.digests) {
      p.reject(new StargzError('ERR_UNAVAILABLE', `gzip worker failed: ${m.error ?? 'empty reply'}`))
      return
    }
    const all = Buffer.from(m.buf)
    const out: MemberResult[] = []
    let pos = 0
    for (let i = 0; i < m.sizes.length; i++) {
      const n = m.sizes[i] as number
      out.push({ gz: all.subarray(pos, pos + n), prefixDigest: m.digests[i] ?? undefined })
      pos += n
    }
    p.resolve(out)
  }

  private failAll(e: unknown): void {
    if (this.failure === undefined) this.failure = e
    for (const p of this.pending.values()) p.reject(e)
    this.pending.clear()
  }

  /** Stops the workers; safe to call twice. Pending batches are rejected. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.failAll(new StargzError('ERR_FAILED_PRECONDITION', 'gzip pool closed'))
    await Promise.all(this.workers.map((w) => w.terminate()))
  }
}
