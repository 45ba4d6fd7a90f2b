/**
 * The streaming TOC → CompactIndex build (toc-build.ts) in a small pool of worker threads, so
 * inflating, hashing, scanning and indexing a layer's TOC never holds the event loop that FUSE,
 * gRPC and HTTP share, and two layers build at once on the two cores (issues #12, #13).
 *
 * The fetched gzip member is transferred in, the index buffer transferred back (no copies);
 * the budget is reserved on the main thread when the worker has read the tar header (the
 * worker waits for the answer), so budget and limit semantics are the inline path's. Errors
 * cross by code and fields and are rebuilt as the same class (toc-build-protocol.ts).
 *
 * One build per worker at a time (each is tens to hundreds of ms of CPU); more wait in order.
 * Owned by whoever creates it (LazyFileSystem): warm() with the filesystem, close() with it.
 */
import type { Worker } from 'node:worker_threads'
import { UnavailableError } from '../errors.js'
import { startModuleWorker } from '../task/start-worker.js'
import { fromWire, type TocBuildMessage, type TocBuildReply } from './toc-build-protocol.js'
import type { TocBuilder, TocBuildRequest } from './toc-build.js'

export interface TocBuildPoolOptions {
  /** Worker threads. Default 2 (both cores of the target machine). */
  workers?: number
}

type Built = Awaited<ReturnType<TocBuilder['build']>>

interface Task {
  id: number
  req: TocBuildRequest
  reserve: (jsonBytes: number) => void
  resolve: (v: Built) => void
  reject: (e: unknown) => void
  /** Settled already (the budget refused): the worker's later answer is dropped. */
  settled: boolean
}

interface Slot { worker: Worker; task: Task | undefined }

/** The member's own ArrayBuffer when it is exactly the member (transfer), else a copy. */
function transferable(b: Buffer): Uint8Array {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length && b.buffer instanceof ArrayBuffer) return new Uint8Array(b.buffer)
  const u = new Uint8Array(b.length)
  u.set(b)
  return u
}

export class TocBuildPool implements TocBuilder {
  private readonly size: number
  private readonly slots: Slot[] = []
  private readonly queue: Task[] = []
  private nextId = 1
  private closed = false
  /** Counters for tests and the bench. */
  readonly stats = { builds: 0, workerRestarts: 0 }

  constructor(opts: TocBuildPoolOptions = {}) {
    this.size = Math.max(1, opts.workers ?? 2)
  }

  /** Start every worker now, not at the first layer (a worker takes tens of ms to boot). */
  warm(): void {
    while (!this.closed && this.slots.length < this.size) this.spawn()
  }

  /** Threads alive (tests: none after close()). */
  threads(): number {
    return this.slots.length
  }

  build(req: TocBuildRequest, reserve: (jsonBytes: number) => void): Promise<Built> {
    if (this.closed) return Promise.reject(new UnavailableError('TOC build pool is closed'))
    return new Promise<Built>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, req, reserve, resolve, reject, settled: false })
      this.pump()
    })
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.task === undefined)
      if (slot === undefined && this.slots.length < this.size) slot = this.spawn()
      if (slot === undefined) return
      const task = this.queue.shift() as Task
      slot.task = task
      slot.worker.ref()
      const { member, ...rest } = task.req
      const u = transferable(member)
      const msg: TocBuildMessage = { ...rest, id: task.id, op: 'build', member: u }
      slot.worker.postMessage(msg, [u.buffer as ArrayBuffer])
    }
  }

  private settle(task: Task, f: () => void): void {
    if (task.settled) return
    task.settled = true
    f()
  }

  private spawn(): Slot {
    const worker = startModuleWorker(import.meta.url, 'toc-build-worker')
    // Idle workers must not keep the process alive (ref'd while building); close() ends them.
    worker.unref()
    const slot: Slot = { worker, task: undefined }
    worker.on('message', (r: TocBuildReply) => {
      const task = slot.task
      if (task === undefined || task.id !== r.id) return
      if (r.op === 'reserve') {
        let ok = true
        try {
          task.reserve(r.jsonBytes)
        } catch (e) {
          ok = false
          this.settle(task, () => task.reject(e))
        }
        const answer: TocBuildMessage = { id: r.id, op: 'reserved', ok }
        worker.postMessage(answer)
        return
      }
      slot.task = undefined
      worker.unref()
      this.stats.builds++
      if (r.op === 'done') this.settle(task, () => task.resolve({ index: Buffer.from(r.index, 0, r.length), tocDigest: r.tocDigest, jsonBytes: r.jsonBytes }))
      else this.settle(task, () => task.reject(fromWire(r.error)))
      this.pump()
    })
    const fail = (err: unknown): void => {
      const i = this.slots.indexOf(slot)
      if (i < 0) return
      this.slots.splice(i, 1)
      if (!this.closed) this.stats.workerRestarts++
      const task = slot.task
      slot.task = undefined
      if (task !== undefined) {
        const e = new UnavailableError(`TOC build worker failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
        this.settle(task, () => task.reject(e))
      }
      if (!this.closed) this.pump()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)))
    this.slots.push(slot)
    return slot
  }

  /** Terminates the workers; queued and running builds are rejected. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const e = new UnavailableError('TOC build pool is closed')
    for (const t of this.queue) this.settle(t, () => t.reject(e))
    this.queue.length = 0
    const slots = [...this.slots]
    // As WorkerChunkDecoder.close(): terminating unref'd workers holds nothing open by itself.
    const keepAlive = setInterval(() => {}, 60_000)
    try {
      await Promise.all(slots.map((s) => s.worker.terminate()))
    } finally {
      clearInterval(keepAlive)
    }
    for (const s of slots) if (s.task !== undefined) { const t = s.task; this.settle(t, () => t.reject(e)) }
    this.slots.length = 0
  }
}
