/**
 * read(file, offset, length) → chunks → cache, or fetch (merged, deduplicated) → inflate + verify
 * off the event loop → cache.
 *
 * Every chunk being loaded has exactly one "flight" in `flights`, keyed by its digest (so two
 * files with identical content share one fetch), registered synchronously before the first
 * await: a concurrent reader of the same chunk always finds it and waits instead of fetching it
 * again. A flight covers the cache lookup as well as the fetch, and a fetched chunk is put into
 * the memory tier before its flight is removed, so there is no window in which a second reader
 * misses both. Nothing is cached or returned unless it hashed to its digest.
 */
import { raceAbort } from '../task/race-abort.js'
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../errors.js'
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import type { ChunkRef, TocIndex } from '../estargz/toc-index.js'
import type { ChunkCache } from '../cache/types.js'
import { chunkError, ChunkFetchError, type ChunkVerifyError } from './errors.js'
import { silentLogger, type Logger } from './logger.js'
import { planSpans, type Span } from './span-plan.js'
import type { ChunkReaderOptions, FetchEvent, LoadMode, LoadOptions, MultiRangeSource, ReaderCounters, ReaderHooks } from './types.js'
import { WorkerChunkDecoder, type Priority, type PriorityChunkDecoder } from './worker-decoder.js'

export type { ByteRange, ChunkReaderOptions, FetchEvent, LoadMode, LoadOptions, MultiRangeSource, ReaderCounters, ReaderHooks } from './types.js'

interface Flight {
  promise: Promise<Buffer>
  /** Joiners should fetch for themselves if this flight fails (prefetch timeout, preemption). */
  retryable: boolean
}

interface Pending {
  ref: ChunkRef
  key: string
  resolve: (b: Buffer) => void
  reject: (e: unknown) => void
}

let shared: WorkerChunkDecoder | undefined
/** The process-wide decode pool used when none is passed in (its workers never hold exit). */
export function sharedDecoder(): WorkerChunkDecoder {
  shared ??= new WorkerChunkDecoder()
  return shared
}

function normalise(name: string): string {
  return name.split('/').filter((p) => p !== '' && p !== '.').join('/')
}

export class ChunkReader {
  readonly index: TocIndex
  readonly source: MultiRangeSource
  private readonly cache: ChunkCache
  private readonly decoder: ChunkDecoder | PriorityChunkDecoder
  private readonly mergeGapBytes: number
  private readonly maxSpanBytes: number
  private readonly allowUnverified: boolean
  private readonly hooks: readonly ReaderHooks[]
  private readonly log: Logger
  private readonly gate: { beginPriority(): () => void } | undefined
  private readonly readaheadBytes: number
  /** Where the last read of each file ended, to spot sequential readers. */
  private readonly lastEnd = new Map<string, number>()
  private readonly flights = new Map<string, Flight>()
  private readonly puts = new Set<Promise<void>>()
  private readonly counters: ReaderCounters = {
    bytesFetched: 0, fetchRequests: 0, cacheHits: 0, cacheMisses: 0, deduplicated: 0, chunksDecoded: 0, verifyFailures: 0, fetchFailures: 0,
  }

  constructor(opts: ChunkReaderOptions) {
    this.index = opts.reader.index
    this.source = opts.source ?? opts.reader.source
    this.cache = opts.cache
    this.decoder = opts.decoder ?? sharedDecoder()
    this.mergeGapBytes = opts.mergeGapBytes ?? 256 * 1024
    this.maxSpanBytes = opts.maxSpanBytes ?? 32 * 1024 * 1024
    this.allowUnverified = opts.allowUnverified ?? false
    this.readaheadBytes = Math.max(0, opts.readaheadBytes ?? 4 * 1024 * 1024)
    this.hooks = opts.hooks === undefined ? [] : Array.isArray(opts.hooks) ? (opts.hooks as ReaderHooks[]) : [opts.hooks as ReaderHooks]
    this.log = opts.logger ?? silentLogger
    this.gate = opts.gate
    if (this.mergeGapBytes < 0 || this.maxSpanBytes <= 0) throw new InvalidArgumentError(`mergeGapBytes must be >= 0 and maxSpanBytes > 0 (got ${this.mergeGapBytes}, ${this.maxSpanBytes})`)
  }

  stats(): ReaderCounters {
    return { ...this.counters }
  }

  /** Chunk flights in progress (tests, state). */
  get inFlight(): number {
    return this.flights.size
  }

  /**
   * Bytes [offset, offset + length) of regular file `name`, clamped to its size. The result
   * may share memory with the cache: read it, do not modify it.
   */
  async read(name: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const e = this.index.resolve(this.index.entries.has(name) ? name : normalise(name))
    if (!e) throw new NotFoundError(`no file ${JSON.stringify(name)} in layer`)
    if (e.type !== 'reg') throw new InvalidArgumentError(`${JSON.stringify(name)} is a ${e.type}, not a regular file`)
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError(`bad read offset ${offset} for ${JSON.stringify(name)}`)
    const size = e.size ?? 0
    const end = Math.min(size, offset + Math.max(0, length))
    if (offset >= end) return Buffer.alloc(0)
    const refs = this.index.chunksInRange(e.name, offset, end - offset)
    const loading = this.loadChunks(refs, { mode: 'demand' })
    if (this.readaheadBytes > 0) this.noteSequential(e.name, offset, end, size)
    const parts = await raceAbort(loading, signal)
    if (parts.length === 1) {
      const only = parts[0] as Buffer
      const from = offset - (refs[0] as ChunkRef).chunkOffset
      return only.subarray(from, from + end - offset)
    }
    // Copy only the requested bytes instead of concatenating whole chunks and slicing.
    const out = Buffer.allocUnsafe(end - offset)
    let pos = 0
    for (let i = 0; i < refs.length; i++) {
      const r = refs[i] as ChunkRef
      const b = parts[i] as Buffer
      const from = Math.max(0, offset - r.chunkOffset)
      const to = Math.min(b.length, end - r.chunkOffset)
      pos += b.copy(out, pos, from, to)
    }
    return out
  }

  private noteSequential(name: string, offset: number, end: number, size: number): void {
    const sequential = this.lastEnd.get(name) === offset
    // Bounded: a reader walking thousands of files sequentially only needs the recent ones.
    if (this.lastEnd.size >= 4096 && !this.lastEnd.has(name)) this.lastEnd.clear()
    this.lastEnd.set(name, end)
    if (!sequential || end >= size) return
    const ahead = this.index.chunksInRange(name, end, this.readaheadBytes).filter((r) =>
      r.digest === undefined ? false : this.cache.peek?.(r.digest) === undefined && !this.flights.has(r.digest))
    if (ahead.length === 0) return
    // 'prefetch' mode: decoded at high priority, and a reader that joins a failed read-ahead
    // fetches for itself. Failures are already logged by the load itself.
    this.loadChunks(ahead, { mode: 'prefetch' }).catch(() => undefined)
  }

  /** Load (from cache or the source) the verified bytes of each chunk, in the order given. */
  loadChunks(refs: readonly ChunkRef[], opts: LoadOptions = {}): Promise<Buffer[]> {
    const mode = opts.mode ?? 'demand'
    const out: Buffer[] = new Array<Buffer>(refs.length)
    const waits: Array<Promise<unknown>> = []
    const mine: Pending[] = []
    const retries: number[] = []
    // Refuse before registering any flight, so a refusal cannot leave flights nobody settles.
    if (!this.allowUnverified) {
      const bad = refs.find((r) => r.digest === undefined)
      if (bad) return Promise.reject(new FailedPreconditionError(`chunk of ${JSON.stringify(bad.name)} at offset ${bad.chunkOffset} has no digest to verify against (legacy TOC); refusing to serve unverified bytes`))
    }
    for (let i = 0; i < refs.length; i++) {
      const ref = refs[i] as ChunkRef
      const key = ref.digest ?? `@${ref.compressedOffset}`
      const hit = ref.digest === undefined ? undefined : this.cache.peek?.(ref.digest)
      // One digest must not stand for two sizes: a forged TOC can give a chunk another chunk's
      // digest (found by the zstd fuzz targets; the fetch path below checks it the same way).
      if (hit !== undefined && hit.length === ref.chunkSize) {
        out[i] = hit
        this.noteHit(ref, key, hit)
        continue
      }
      const flight = this.flights.get(key)
      if (flight) {
        this.counters.deduplicated++
        // A prefetch that timed out or a preempted background fetch must not fail an on-demand
        // reader that merely joined it: such chunks are loaded again below, together.
        const retry = flight.retryable && mode === 'demand'
        waits.push(flight.promise.then((b) => { out[i] = b }, (e: unknown) => {
          if (!retry) throw e
          retries.push(i)
        }))
        continue
      }
      let pending!: Pending
      const promise = new Promise<Buffer>((resolve, reject) => { pending = { ref, key, resolve, reject } })
      this.flights.set(key, { promise, retryable: mode !== 'demand' })
      mine.push(pending)
      waits.push(promise.then((b) => { out[i] = b }))
    }
    if (waits.length === 0) return Promise.resolve(out)
    const end = mode === 'demand' ? this.gate?.beginPriority() : undefined
    if (mine.length > 0) void this.resolvePending(mine, mode, opts)
    const all = Promise.all(waits).then(async () => {
      if (retries.length === 0) return out
      // The failed flights are gone by now, so this starts new ones (merged into few requests).
      const again = await this.loadChunks(retries.map((i) => refs[i] as ChunkRef), { mode })
      retries.forEach((i, k) => { out[i] = again[k] as Buffer })
      return out
    })
    if (end) void all.then(end, end)
    return all
  }

  private settle(p: Pending, data: Buffer): void {
    this.flights.delete(p.key)
    p.resolve(data)
  }

  private fail(p: Pending, e: unknown): void {
    this.flights.delete(p.key)
    p.reject(e)
  }

  private noteHit(ref: ChunkRef, key: string, data: Buffer): void {
    this.counters.cacheHits++
    for (const h of this.hooks) { h.onCacheHit?.({ key, bytes: data.length }); h.onChunkReady?.(ref, 'cache') }
  }

  /** Owns the flights in `mine`: every one is settled or failed before this returns. */
  private async resolvePending(mine: Pending[], mode: LoadMode, opts: LoadOptions): Promise<void> {
    const misses: Pending[] = []
    await Promise.all(mine.map(async (p) => {
      let data: Buffer | undefined
      if (p.ref.digest !== undefined) {
        try {
          data = await this.cache.get(p.ref.digest)
        } catch (e) {
          // A broken cache must not break reads: fetch instead.
          this.log.warn({ key: p.key, err: (e as Error).message }, 'cache-get-failed')
        }
      }
      if (data !== undefined && data.length === p.ref.chunkSize) {
        this.noteHit(p.ref, p.key, data)
        this.settle(p, data)
        return
      }
      this.counters.cacheMisses++
      for (const h of this.hooks) h.onCacheMiss?.({ key: p.key })
      misses.push(p)
    }))
    if (misses.length === 0) return
    const byRef = new Map<ChunkRef, Pending>(misses.map((p) => [p.ref, p]))
    const refs = misses.map((p) => p.ref)
    const spans: Span[] = opts.span
      ? [{ offset: opts.span.offset, length: opts.span.length, refs }]
      : planSpans(refs, { mergeGapBytes: this.mergeGapBytes, maxSpanBytes: this.maxSpanBytes })
    try {
      await this.fetchSpans(spans, byRef, mode, opts.signal)
    } catch (e) {
      // fetchSpans settles what it can; anything left (a bug) must still not hang readers.
      for (const p of misses) if (this.flights.get(p.key)) this.fail(p, chunkError(p.ref, e))
    }
  }

  private async fetchSpans(spans: Span[], byRef: Map<ChunkRef, Pending>, mode: LoadMode, signal: AbortSignal | undefined): Promise<void> {
    const multi = spans.length > 1 && typeof this.source.readRanges === 'function'
    if (multi) {
      const started = performance.now()
      let bufs: Buffer[] | undefined
      let err: unknown
      this.counters.fetchRequests++
      try {
        bufs = await (this.source.readRanges as NonNullable<MultiRangeSource['readRanges']>)(spans.map((s) => ({ offset: s.offset, length: s.length })), signal)
      } catch (e) { err = e }
      const total = spans.reduce((n, s) => n + s.length, 0)
      if (bufs) this.counters.bytesFetched += bufs.reduce((n, b) => n + b.length, 0)
      this.emitFetch({ offset: (spans[0] as Span).offset, length: total, ranges: spans.length, chunks: byRef.size, mode, durationMs: performance.now() - started, ok: bufs !== undefined })
      await Promise.all(spans.map((s, i) => this.decodeSpan(s, bufs?.[i], err, byRef, mode)))
      return
    }
    await Promise.all(spans.map(async (s) => {
      const started = performance.now()
      let buf: Buffer | undefined
      let err: unknown
      this.counters.fetchRequests++
      try {
        buf = await this.source.read(s.offset, s.length, signal)
        this.counters.bytesFetched += buf.length
      } catch (e) { err = e }
      this.emitFetch({ offset: s.offset, length: s.length, ranges: 1, chunks: s.refs.length, mode, durationMs: performance.now() - started, ok: buf !== undefined })
      await this.decodeSpan(s, buf, err, byRef, mode)
    }))
  }

  /** Fetch raw blob bytes, counted like chunk fetches (tar headers the background fetch walks over). */
  async fetchRaw(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const started = performance.now()
    this.counters.fetchRequests++
    let ok = false
    try {
      const b = await this.source.read(offset, length, signal)
      this.counters.bytesFetched += b.length
      ok = true
      return b
    } finally {
      this.emitFetch({ offset, length, ranges: 1, chunks: 0, mode: 'background', durationMs: performance.now() - started, ok })
    }
  }

  private emitFetch(ev: FetchEvent): void {
    this.log.debug({ offset: ev.offset, length: ev.length, ranges: ev.ranges, chunks: ev.chunks, mode: ev.mode, ms: Math.round(ev.durationMs * 10) / 10, ok: ev.ok }, 'chunk-fetch')
    for (const h of this.hooks) h.onFetch?.(ev)
  }

  private async decodeSpan(s: Span, buf: Buffer | undefined, fetchErr: unknown, byRef: Map<ChunkRef, Pending>, mode: LoadMode): Promise<void> {
    const owned = s.refs.map((r) => byRef.get(r)).filter((p): p is Pending => p !== undefined)
    if (buf === undefined || buf.length !== s.length) {
      const reason = buf === undefined
        ? `fetching blob range [${s.offset}, ${s.offset + s.length}) failed: ${fetchErr instanceof Error ? fetchErr.message : String(fetchErr)}`
        : `source returned ${buf.length} bytes for blob range [${s.offset}, ${s.offset + s.length})`
      this.counters.fetchFailures++
      const first = owned[0]
      for (const p of owned) {
        const e = new ChunkFetchError(p.ref, reason, { cause: fetchErr })
        if (p === first) this.report(e, mode)
        this.fail(p, e)
      }
      return
    }
    const priority: Priority = mode === 'background' ? 'low' : 'high'
    let allOk = true
    await Promise.all(owned.map(async (p) => {
      const member = buf.subarray(p.ref.compressedOffset - s.offset, p.ref.compressedEnd - s.offset)
      let data: Buffer
      try {
        data = await (this.decoder as PriorityChunkDecoder).decode(member, p.ref, undefined, priority)
        if (data.length !== p.ref.chunkSize) throw new ChunkFetchError(p.ref, `decoder returned ${data.length} bytes, chunk is ${p.ref.chunkSize}`)
      } catch (e) {
        allOk = false
        const err = chunkError(p.ref, e)
        if (err.code === 'ERR_CHUNK_DIGEST_MISMATCH') this.counters.verifyFailures++
        else this.counters.fetchFailures++
        this.report(err, mode)
        this.fail(p, err)
        return
      }
      this.counters.chunksDecoded++
      if (p.ref.digest !== undefined) this.putCache(p.ref.digest, data, mode)
      for (const h of this.hooks) h.onChunkReady?.(p.ref, 'fetch')
      this.settle(p, data)
    }))
    if (allOk) for (const h of this.hooks) h.onSpanVerified?.(s.offset, s.length)
  }

  private report(err: ChunkFetchError | ChunkVerifyError, mode: LoadMode): void {
    this.log.warn({ digest: err.digest, path: err.path, offset: err.chunkOffset, blobOffset: err.blobOffset, mode, code: err.code, err: err.message }, 'chunk-read-failed')
    for (const h of this.hooks) h.onError?.(err)
  }

  private putCache(key: string, data: Buffer, mode: LoadMode): void {
    const p = this.cache.put(key, data, { background: mode === 'background' }).catch((e: unknown) => {
      this.log.warn({ key, err: (e as Error).message }, 'cache-put-failed')
    })
    this.puts.add(p)
    void p.finally(() => this.puts.delete(p))
  }

  /** Wait until every cache write started so far has finished. */
  async flush(): Promise<void> {
    while (this.puts.size > 0) await Promise.allSettled([...this.puts])
  }

  /** Wait for in-flight loads and cache writes. The decoder and cache are owned by the caller. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.flights.values()].map((f) => f.promise))
    await this.flush()
  }
}
