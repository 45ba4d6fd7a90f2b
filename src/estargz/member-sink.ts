/**
 * The output side of the eStargz writer: collects uncompressed bytes into gzip members, sends
 * them in batches to the compression pool, and writes the compressed members to the output in
 * order, tracking where each member starts.
 *
 * Bounded memory: at most `maxInflight` batches (each about BATCH_BYTES, or one big chunk) are
 * being compressed or waiting to be written at any time.
 */
import { createHash, type Hash } from 'node:crypto'
import { UnavailableError } from '../errors.js'
import type { GzipMemberPool, MemberJob, MemberResult } from './gzip-members.js'

const BATCH_BYTES = 1 << 20
const BATCH_MEMBERS = 512

export interface MemberHooks {
  /** Called with the compressed offset at which the member starts. */
  onOffset?: (offset: number) => void
  /** Called with the sha256 of the member's first `hashPrefix` bytes. */
  onPrefixDigest?: (digest: string) => void
}

interface OpenMember extends MemberJob { hooks: MemberHooks }
interface Batch { promise: Promise<MemberResult[]>; hooks: MemberHooks[] }

export class MemberSink {
  private cur: OpenMember | undefined
  private batch: OpenMember[] = []
  private batchBytes = 0
  private readonly queue: Batch[] = []
  private outputError: unknown
  /** Compressed bytes written so far (= offset of the next member). */
  compressedSize = 0
  /** Uncompressed bytes accepted so far. */
  uncompressedSize = 0
  private readonly diffHash: Hash = createHash('sha256')
  private readonly blobHash: Hash = createHash('sha256')

  constructor(
    private readonly pool: GzipMemberPool,
    private readonly output: NodeJS.WritableStream,
    private readonly maxInflight: number,
  ) {
    output.on('error', (e: unknown) => { if (this.outputError === undefined) this.outputError = e })
  }

  /** Appends uncompressed bytes to the open member (opening one if none is open). */
  write(buf: Buffer): void {
    if (buf.length === 0) return
    if (!this.cur) this.cur = { parts: [], length: 0, hashPrefix: 0, hooks: {} }
    this.cur.parts.push(buf)
    this.cur.length += buf.length
    this.diffHash.update(buf)
    this.uncompressedSize += buf.length
  }

  /** Closes the open member and opens a fresh one, which the next `write` starts. */
  async startMember(hashPrefix: number, hooks: MemberHooks): Promise<void> {
    await this.closeMember()
    this.cur = { parts: [], length: 0, hashPrefix, hooks }
  }

  async closeMember(): Promise<void> {
    const m = this.cur
    this.cur = undefined
    if (!m || m.length === 0) return
    if (m.length >= BATCH_BYTES) await this.flushBatch()
    this.batch.push(m)
    this.batchBytes += m.length
    if (this.batchBytes >= BATCH_BYTES || this.batch.length >= BATCH_MEMBERS) await this.flushBatch()
  }

  private async flushBatch(): Promise<void> {
    if (this.batch.length === 0) return
    while (this.queue.length >= this.maxInflight) await this.writeOldest()
    const jobs = this.batch
    this.batch = []
    this.batchBytes = 0
    const promise = this.pool.compress(jobs)
    promise.catch(() => { /* observed when written */ })
    this.queue.push({ promise, hooks: jobs.map((j) => j.hooks) })
  }

  private async writeOldest(): Promise<void> {
    const b = this.queue.shift()
    if (!b) return
    const results = await b.promise
    for (let i = 0; i < results.length; i++) {
      const r = results[i] as MemberResult
      const hooks = b.hooks[i] as MemberHooks
      hooks.onOffset?.(this.compressedSize)
      if (r.prefixDigest !== undefined) hooks.onPrefixDigest?.(r.prefixDigest)
      await this.writeRaw(r.gz)
    }
  }

  /** Writes already-compressed bytes (the footer) after everything queued. */
  async writeRaw(buf: Buffer): Promise<void> {
    if (this.outputError !== undefined) throw this.outputError
    this.blobHash.update(buf)
    this.compressedSize += buf.length
    if (!this.output.write(buf)) await this.waitDrain()
  }

  private waitDrain(): Promise<void> {
    return new Promise((resolve, reject) => {
      const out = this.output
      const done = (): void => { out.off('drain', onDrain); out.off('error', onError); out.off('close', onClose) }
      const onDrain = (): void => { done(); resolve() }
      const onError = (e: unknown): void => { done(); reject(e) }
      const onClose = (): void => { done(); reject(this.outputError ?? new UnavailableError('output stream closed before the layer was written')) }
      out.on('drain', onDrain)
      out.on('error', onError)
      out.on('close', onClose)
    })
  }

  /** Closes the open member and writes everything queued. */
  async flushAll(): Promise<void> {
    await this.closeMember()
    await this.flushBatch()
    while (this.queue.length > 0) await this.writeOldest()
  }

  get diffID(): string {
    return 'sha256:' + this.diffHash.copy().digest('hex')
  }

  get digest(): string {
    return 'sha256:' + this.blobHash.copy().digest('hex')
  }
}
