/**
 * ChunkDecoder backed by a small pool of worker threads, so inflating and hashing big members
 * never holds the event loop that FUSE, gRPC and HTTP share.
 *
 * Why this shape (PERF_NOTES, re-measured in bench/read-path.ts; see the numbers there):
 * - node:zlib inflate is 2-4x faster than fflate at every size above ~1 KiB, so fflate is out.
 * - The libuv pool (zlib async) uses both cores too, but each call costs a thread-pool hop and it
 *   cannot hash: sha256 of the output would still run on the main thread (0.66 ms/MiB). A worker
 *   inflates *and* verifies, so the main thread only sees a message with the verified bytes.
 * - With 4 parallel readers over 1 MiB members, 2 worker threads gave the best stat() tail.
 * - Tiny members (≤ syncBelowBytes of output) inflate+hash in tens of µs: a worker hop
 *   (~50-200 µs) costs more than the work, so they run synchronously on the main thread.
 *
 * Work is queued in two classes: on-demand reads ('high') always go before background fetch
 * ('low'). Each worker takes up to two tasks at a time so the message hop overlaps with work.
 */
import type { Worker } from 'node:worker_threads'
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import type { ChunkRef } from '../estargz/toc-index.js'
import { UnavailableError } from '../errors.js'
import { startModuleWorker } from '../task/start-worker.js'
import { decodeMember } from './decode-member.js'
import { decodeStreaming, outcomeBytes } from './decode-outcome.js'
import type { WorkerReply, WorkerRequest } from './worker-protocol.js'

export type Priority = 'high' | 'low'

/** A ChunkDecoder that also takes a priority and can hash off the main thread. */
export interface PriorityChunkDecoder extends ChunkDecoder {
  decode(member: Buffer, ref: ChunkRef, signal?: AbortSignal, priority?: Priority): Promise<Buffer>
}

export interface WorkerDecoderOptions {
  /** Worker threads. Default 2 (both cores of the target machine; see PERF_NOTES). */
  workers?: number
  /**
   * Chunks up to this many uncompressed bytes are decoded on the main thread. Default 32 KiB:
   * measured one-at-a-time inflate+sha256, 16 KiB sync 51 µs vs worker 87 µs; 64 KiB sync 142 µs
   * (too long to hold the loop) vs worker throughput 308 MB/s with 4 in flight.
   */
  syncBelowBytes?: number
  /** Tasks handed to one worker at a time. Default 2. */
  perWorker?: number
}

/** A request without its id (assigned when queued). */
type Request = WorkerRequest extends infer R ? R extends WorkerRequest ? Omit<R, 'id'> : never : never

interface Task {
  id: number
  msg: Request
  transfer: ArrayBuffer[]
  resolve: (v: WorkerReply) => void
  reject: (e: unknown) => void
}

interface Slot { worker: Worker; running: Map<number, Task> }

function copyOut(b: Buffer): Uint8Array {
  const u = new Uint8Array(b.length)
  u.set(b)
  return u
}

/** Start a decode worker (decode-worker.ts; compiled or under tsx: src/task/start-worker.ts). */
function startWorker(): Worker {
  return startModuleWorker(import.meta.url, 'decode-worker')
}

export class WorkerChunkDecoder implements PriorityChunkDecoder {
  private readonly size: number
  private readonly syncBelow: number
  private readonly perWorker: number
  private readonly slots: Slot[] = []
  private readonly high: Task[] = []
  private readonly low: Task[] = []
  private nextId = 1
  private closed = false
  /** Counters for tests and the bench. */
  readonly stats = { syncDecodes: 0, workerDecodes: 0, fallbackDecodes: 0, workerRestarts: 0 }

  constructor(opts: WorkerDecoderOptions = {}) {
    this.size = Math.max(1, opts.workers ?? 2)
    this.syncBelow = opts.syncBelowBytes ?? 32 * 1024
    this.perWorker = Math.max(1, opts.perWorker ?? 2)
  }

  /**
   * Start every worker now instead of at the first big chunk. A worker takes tens of ms to boot
   * (hundreds under tsx), and the first chunks a container needs are the ones that wait for it:
   * measured in `stargz bench` (issue #13), the optimized python3 prefetch's 17 chunks were
   * fetched in 222 ms and then waited 373 ms, mostly for the pool to start. The daemon warms its
   * pool when it starts; idle workers do not keep the process alive.
   */
  warm(): void {
    while (!this.closed && this.slots.length < this.size) this.spawn()
  }

  async decode(member: Buffer, ref: ChunkRef, signal?: AbortSignal, priority: Priority = 'high'): Promise<Buffer> {
    signal?.throwIfAborted()
    if (ref.chunkSize <= this.syncBelow && member.length <= this.syncBelow) {
      this.stats.syncDecodes++
      const o = decodeMember(member, ref.chunkSize, ref.digest, ref.codec)
      if (o.kind !== 'too-large') return outcomeBytes(o, ref)
      this.stats.fallbackDecodes++
      return decodeStreaming(member, ref, signal)
    }
    const u = copyOut(member)
    const reply = await this.submit({ op: 'decode', member: u, size: ref.chunkSize, digest: ref.digest, codec: ref.codec ?? 'gzip' }, [u.buffer as ArrayBuffer], priority)
    this.stats.workerDecodes++
    if (reply.op !== 'decode') throw new UnavailableError(`chunk decoder worker answered a decode with ${reply.op}`)
    const o = reply.outcome
    if (o.kind === 'ok') return outcomeBytes({ kind: 'ok', data: Buffer.from(o.buf, 0, o.len) }, ref)
    if (o.kind === 'too-large') {
      this.stats.fallbackDecodes++
      return decodeStreaming(member, ref, signal)
    }
    return outcomeBytes(o, ref)
  }

  /** sha256 in a worker ("sha256:<hex>"); usable as a DirCache hasher. */
  sha256 = async (data: Buffer): Promise<string> => {
    const u = copyOut(data)
    const reply = await this.submit({ op: 'sha256', data: u }, [u.buffer as ArrayBuffer], 'high')
    if (reply.op !== 'sha256') throw new UnavailableError(`chunk decoder worker answered a sha256 with ${reply.op}`)
    return reply.hash
  }

  private submit(msg: Request, transfer: ArrayBuffer[], priority: Priority): Promise<WorkerReply> {
    if (this.closed) return Promise.reject(new UnavailableError('chunk decoder pool is closed'))
    return new Promise<WorkerReply>((resolve, reject) => {
      const task: Task = { id: this.nextId++, msg, transfer, resolve, reject }
      ;(priority === 'high' ? this.high : this.low).push(task)
      this.pump()
    })
  }

  private pump(): void {
    while (this.high.length > 0 || this.low.length > 0) {
      const slot = this.freeSlot()
      if (!slot) return
      const task = (this.high.length > 0 ? this.high.shift() : this.low.shift()) as Task
      if (slot.running.size === 0) slot.worker.ref()
      slot.running.set(task.id, task)
      const req = { ...task.msg, id: task.id } as WorkerRequest
      slot.worker.postMessage(req, task.transfer)
    }
  }

  private freeSlot(): Slot | undefined {
    let best: Slot | undefined
    for (const s of this.slots) if (s.running.size < this.perWorker && (!best || s.running.size < best.running.size)) best = s
    if (best && best.running.size === 0) return best
    if (this.slots.length < this.size) return this.spawn()
    return best
  }

  private spawn(): Slot {
    const worker = startWorker()
    // Idle workers must not keep the process alive (ref'd while they hold tasks); close() ends them.
    worker.unref()
    const slot: Slot = { worker, running: new Map() }
    worker.on('message', (r: WorkerReply) => {
      const task = slot.running.get(r.id)
      if (!task) return
      slot.running.delete(r.id)
      // Only a worker with work in hand keeps the process alive.
      if (slot.running.size === 0) slot.worker.unref()
      task.resolve(r)
      this.pump()
    })
    const fail = (err: unknown): void => {
      const i = this.slots.indexOf(slot)
      if (i < 0) return
      this.slots.splice(i, 1)
      if (!this.closed) this.stats.workerRestarts++
      const e = new UnavailableError(`chunk decoder worker failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
      for (const t of slot.running.values()) t.reject(e)
      slot.running.clear()
      if (!this.closed) this.pump()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)))
    this.slots.push(slot)
    return slot
  }

  /** Terminates the workers; queued and running work is rejected. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const e = new UnavailableError('chunk decoder pool is closed')
    for (const t of [...this.high, ...this.low]) t.reject(e)
    this.high.length = 0
    this.low.length = 0
    // terminate() of an idle (unref'd) worker does not hold the event loop by itself: without a
    // ref'd handle the process can drain and exit with close() never settled (seen under tap).
    const keepAlive = setInterval(() => {}, 60_000)
    try {
      await Promise.all(this.slots.map((s) => s.worker.terminate()))
    } finally {
      clearInterval(keepAlive)
    }
  }
}
