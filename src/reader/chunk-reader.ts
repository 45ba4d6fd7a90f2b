/**
 * The one way bytes leave a blob (FUSE, the daemon, `stargz cat` and `stargz verify`):
 * read(file, offset, length) → chunks → cache, or fetch (merged, deduplicated) → inflate + verify
 * off the event loop → cache.
 *
 * Every chunk being loaded has exactly one "flight" in `flights`, keyed by its digest and size
 * (so two files with identical content share one fetch, and a chunk can never stand in for one
 * of another size), registered synchronously before the first await: a concurrent reader of the
 * same chunk always finds it and waits instead of fetching it again. A flight covers the cache
 * lookup as well as the fetch, and a fetched chunk is put into the memory tier before its flight
 * is removed, so there is no window in which a second reader misses both. Nothing is cached or
 * returned unless it hashed to its digest and has exactly the chunk's size.
 *
 * Memory per read is bounded whatever the TOC claims: chunks bigger than `maxChunkInMemoryBytes`
 * (or whose member is bigger than a span) are never held whole. They are fetched in pieces,
 * inflated and hashed on the stream, and either written to the disk cache (then served by range)
 * or, without one, streamed again for each read keeping only the window asked for.
 *
 * Legacy (CRFS) files with several chunks and no chunk digests are verified once against the
 * whole-file digest (streamed); the chunks' own digests are then known and they are served like
 * any other chunk.
 */
import { createHash } from 'node:crypto'
import { raceAbort } from '../task/race-abort.js'
import { ChunkDigestError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../errors.js'
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import { normaliseLookup, type IndexedBlob } from '../estargz/reader.js'
import type { ChunkRef, LayerIndex } from '../estargz/toc-index.js'
import type { TocEntry } from '../estargz/types.js'
import type { ChunkCache } from '../cache/types.js'
import { chunkError, ChunkFetchError, type ChunkVerifyError } from './errors.js'
import { silentLogger, type Logger } from './logger.js'
import { noCache } from './no-cache.js'
import { planSpans, splitSpan, type Span } from './span-plan.js'
import { outcomeError } from './decode-outcome.js'
import { rangePieces, streamDecode, type StreamDecodeOptions } from './stream-decode.js'
import type { ChunkReaderOptions, FetchEvent, LoadMode, LoadOptions, MultiRangeSource, ReaderCounters, ReaderHooks } from './types.js'
import { WorkerChunkDecoder, type Priority, type PriorityChunkDecoder } from './worker-decoder.js'

export type { ByteRange, ChunkReaderOptions, FetchEvent, LoadMode, LoadOptions, MultiRangeSource, ReaderCounters, ReaderHooks } from './types.js'

/** A read waiting for part of a big chunk that is being streamed without a cache to keep it. */
interface Window { from: number; to: number; buf: Buffer }

/** One stream of a big chunk; readers whose window it has not passed yet ride along. */
interface WindowStream { pos: number; windows: Set<Window>; done: Promise<void> }

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
  done?: boolean
}

let shared: WorkerChunkDecoder | undefined
/** The process-wide decode pool used when none is passed in (its workers never hold exit). */
export function sharedDecoder(): WorkerChunkDecoder {
  shared ??= new WorkerChunkDecoder()
  return shared
}

/** Cache lookups (back tier: file reads) in flight at once for one load. */
const LOOKUP_LANES = 16
/** Decodes of one span in flight at once (2 workers × 2 tasks each). */
const DECODE_LANES = 4
/** Small (inline) decodes per lane between yields to the event loop (~20-50 µs each). */
const YIELD_EVERY = 32

/** Flight and cache-check key: a digest stands for one size only. */
function keyOf(ref: ChunkRef): string {
  return ref.digest === undefined ? `@${ref.compressedOffset}` : `${ref.digest}/${ref.chunkSize}`
}

export class ChunkReader {
  readonly index: LayerIndex
  readonly source: MultiRangeSource
  private readonly reader: IndexedBlob
  private readonly cache: ChunkCache
  private readonly decoder: ChunkDecoder | PriorityChunkDecoder
  private readonly mergeGapBytes: number
  private readonly maxSpanBytes: number
  private readonly maxChunkInMemory: number
  private readonly pieceBytes: number
  private readonly allowUnverified: boolean
  private readonly hooks: readonly ReaderHooks[]
  private readonly log: Logger
  private readonly gate: { beginPriority(): () => void } | undefined
  private readonly readaheadBytes: number
  /** Where the last read of each file ended, to spot sequential readers. */
  private readonly lastEnd = new Map<string, number>()
  private readonly flights = new Map<string, Flight>()
  /** Legacy files being verified. */
  private readonly streams = new Map<string, Promise<boolean>>()
  /** Big chunks being streamed into the cache. */
  private readonly bigStores = new Map<string, { p: Promise<boolean>; retryable: boolean }>()
  /** Big chunks streamed for windows (no cache to store them in), by flight key. */
  private readonly windowStreams = new Map<string, WindowStream>()
  private readonly puts = new Set<Promise<void>>()
  private readonly counters: ReaderCounters = {
    bytesFetched: 0, fetchRequests: 0, cacheHits: 0, cacheMisses: 0, deduplicated: 0, chunksDecoded: 0, verifyFailures: 0, fetchFailures: 0,
  }

  constructor(opts: ChunkReaderOptions) {
    this.reader = opts.reader
    this.index = opts.reader.index
    this.source = opts.source ?? opts.reader.source
    this.cache = opts.cache ?? noCache
    this.decoder = opts.decoder ?? sharedDecoder()
    this.mergeGapBytes = opts.mergeGapBytes ?? 256 * 1024
    this.maxSpanBytes = opts.maxSpanBytes ?? 32 * 1024 * 1024
    this.maxChunkInMemory = opts.maxChunkInMemoryBytes ?? 16 * 1024 * 1024
    this.pieceBytes = Math.max(1, opts.streamPieceBytes ?? 4 * 1024 * 1024)
    this.allowUnverified = opts.allowUnverified ?? opts.reader.allowUnverified
    this.readaheadBytes = Math.max(0, opts.readaheadBytes ?? 4 * 1024 * 1024)
    this.hooks = opts.hooks === undefined ? [] : Array.isArray(opts.hooks) ? (opts.hooks as ReaderHooks[]) : [opts.hooks as ReaderHooks]
    this.log = opts.logger ?? silentLogger
    this.gate = opts.gate
    if (this.mergeGapBytes < 0 || this.maxSpanBytes <= 0) throw new InvalidArgumentError(`mergeGapBytes must be >= 0 and maxSpanBytes > 0 (got ${this.mergeGapBytes}, ${this.maxSpanBytes})`)
    if (!(this.maxChunkInMemory > 0)) throw new InvalidArgumentError(`maxChunkInMemoryBytes must be > 0 (got ${this.maxChunkInMemory})`)
  }

  stats(): ReaderCounters {
    return { ...this.counters }
  }

  /** Chunk flights and streams in progress (tests, state). */
  get inFlight(): number {
    return this.flights.size + this.streams.size + this.bigStores.size + this.windowStreams.size
  }

  /** Chunks that are never held whole in memory. */
  isBig(ref: ChunkRef): boolean {
    // zstd:chunked chunks are decoded in memory (the streaming decoder is gzip's); zstd-codec
    // grows its output only with bytes really decoded, but a real big zstd chunk is held whole.
    if (ref.codec === 'zstd') return false
    return ref.chunkSize > this.maxChunkInMemory || ref.compressedEnd - ref.compressedOffset > this.maxSpanBytes
  }

  /**
   * Bytes [offset, offset + length) of regular file `name`, clamped to its size. The result
   * may share memory with the cache: read it, do not modify it. It is always exactly as long as
   * the clamped range, and every byte of it came out of a verified chunk.
   */
  async read(name: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const e = this.entry(name)
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError(`bad read offset ${offset} for ${JSON.stringify(name)}`)
    const size = e.size ?? 0
    const end = Math.min(size, offset + Math.max(0, length))
    if (offset >= end) return Buffer.alloc(0)
    let refs = this.index.chunksInRange(e.name, offset, end - offset)
    if (this.needsFileCheck(refs)) {
      await raceAbort(this.verifyFile(e, 'demand'), signal)
      refs = this.index.chunksInRange(e.name, offset, end - offset)
    }
    const small = refs.filter((r) => !this.isBig(r))
    const loading = small.length > 0 ? this.loadSmall(small, { mode: 'demand' }) : Promise.resolve([])
    if (this.readaheadBytes > 0) this.noteSequential(e.name, offset, end, size)
    const windows = refs.filter((r) => this.isBig(r)).map((r) => {
      const from = Math.max(0, offset - r.chunkOffset)
      const to = Math.min(r.chunkSize, end - r.chunkOffset)
      return this.readBig(r, from, to, signal).then((b) => ({ r, b }))
    })
    const [parts, big] = await raceAbort(Promise.all([loading, Promise.all(windows)]), signal)
    const pieces = new Map<ChunkRef, Buffer>()
    small.forEach((r, i) => pieces.set(r, parts[i] as Buffer))
    for (const { r, b } of big) pieces.set(r, b)
    if (refs.length === 1 && small.length === 1) {
      const r = refs[0] as ChunkRef
      const only = parts[0] as Buffer
      this.assertLength(r, only, r.chunkSize)
      const from = offset - r.chunkOffset
      return only.subarray(from, from + end - offset)
    }
    // Zero-filled, and checked to be filled completely: never hand out memory we did not write.
    const out = Buffer.alloc(end - offset)
    let pos = 0
    for (const r of refs) {
      const b = pieces.get(r) as Buffer
      const from = Math.max(0, offset - r.chunkOffset)
      const to = Math.min(r.chunkSize, end - r.chunkOffset)
      if (this.isBig(r)) {
        this.assertLength(r, b, to - from)
        pos += b.copy(out, pos)
      } else {
        this.assertLength(r, b, r.chunkSize)
        pos += b.copy(out, pos, from, to)
      }
    }
    if (pos !== out.length) throw new ChunkFetchError(refs[0] as ChunkRef, `read of ${JSON.stringify(e.name)} at ${offset} assembled ${pos} of ${out.length} bytes`)
    return out
  }

  private assertLength(r: ChunkRef, b: Buffer | undefined, want: number): void {
    if (b === undefined || b.length !== want) throw new ChunkFetchError(r, `internal: got ${b?.length ?? 'no'} bytes for a chunk part of ${want}`)
  }

  private entry(name: string): TocEntry {
    const e = this.index.resolve(name) ?? this.index.resolve(normaliseLookup(name))
    if (!e) throw new NotFoundError(`no file ${JSON.stringify(name)} in layer`)
    if (e.type !== 'reg') throw new InvalidArgumentError(`${JSON.stringify(name)} is a ${e.type}, not a regular file`)
    return e
  }

  /** Chunks without digests that must be verified through their file's digest first. */
  private needsFileCheck(refs: readonly ChunkRef[]): boolean {
    return !this.allowUnverified && refs.some((r) => r.digest === undefined)
  }

  private peekChunk(ref: ChunkRef): Buffer | undefined {
    if (ref.digest === undefined) return undefined
    const hit = this.cache.peek?.(ref.digest)
    // A hit of another length is another chunk claiming this digest: a miss, never served.
    return hit !== undefined && hit.length === ref.chunkSize ? hit : undefined
  }

  private noteSequential(name: string, offset: number, end: number, size: number): void {
    const sequential = this.lastEnd.get(name) === offset
    // Bounded: a reader walking thousands of files sequentially only needs the recent ones.
    if (this.lastEnd.size >= 4096 && !this.lastEnd.has(name)) this.lastEnd.clear()
    this.lastEnd.set(name, end)
    if (!sequential || end >= size) return
    const ahead = this.index.chunksInRange(name, end, this.readaheadBytes).filter((r) =>
      r.digest !== undefined && !this.isBig(r) && !(this.cache.has?.(r.digest) ?? this.peekChunk(r) !== undefined) && !this.flights.has(keyOf(r)))
    if (ahead.length === 0) return
    // 'prefetch' mode: decoded at high priority, and a reader that joins a failed read-ahead
    // fetches for itself. Failures are already logged by the load itself.
    this.loadSmall(ahead, { mode: 'prefetch' }).catch(() => undefined)
  }

  /**
   * Make chunks available locally, verified (prefetch, background fetch, verify): small chunks
   * through the cache, big ones streamed into the cache when it can store them. In 'demand'
   * mode a big chunk the cache cannot store is still streamed and verified (stargz verify);
   * otherwise it is left for on-demand reads.
   */
  async loadChunks(refs: readonly ChunkRef[], opts: LoadOptions = {}): Promise<void> {
    const mode = opts.mode ?? 'demand'
    const legacy = new Map<string, TocEntry>()
    if (!this.allowUnverified) {
      for (const r of refs) if (r.digest === undefined) legacy.set(r.name, this.entry(r.name))
    }
    for (const e of legacy.values()) await raceAbort(this.verifyFile(e, mode), opts.signal)
    const small = refs.filter((r) => !this.isBig(r))
    const big = refs.filter((r) => this.isBig(r))
    const work: Array<Promise<unknown>> = []
    if (small.length > 0) {
      const o: LoadOptions & { skip?: readonly ChunkRef[] } = { ...opts, mode }
      if (big.length > 0) o.skip = big
      work.push(this.loadSmall(small, o))
    }
    for (const r of big) {
      work.push(this.storeBig(r, mode, opts.signal).then(async (stored) => {
        if (!stored && mode === 'demand') await this.streamWindow(r, 0, 0, opts.signal)
      }))
    }
    await Promise.all(work)
  }

  /** Load (from cache or the source) the verified bytes of each small chunk, in the order given. */
  private loadSmall(refs: readonly ChunkRef[], opts: LoadOptions & { skip?: readonly ChunkRef[] } = {}): Promise<Buffer[]> {
    const mode = opts.mode ?? 'demand'
    const out: Buffer[] = new Array<Buffer>(refs.length)
    const waits: Array<Promise<unknown>> = []
    const mine: Pending[] = []
    const retries: number[] = []
    // Refuse before registering any flight, so a refusal cannot leave flights nobody settles.
    if (!this.allowUnverified) {
      const bad = refs.find((r) => r.digest === undefined)
      if (bad) return Promise.reject(new FailedPreconditionError(`chunk of ${JSON.stringify(bad.name)} at offset ${bad.chunkOffset} has no digest to verify against (legacy TOC without a file digest); refusing to serve unverified bytes`))
    }
    for (let i = 0; i < refs.length; i++) {
      const ref = refs[i] as ChunkRef
      const key = keyOf(ref)
      const hit = this.peekChunk(ref)
      if (hit !== undefined) {
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
      const again = await this.loadSmall(retries.map((i) => refs[i] as ChunkRef), { mode })
      retries.forEach((i, k) => { out[i] = again[k] as Buffer })
      return out
    })
    if (end) void all.then(end, end)
    return all
  }

  private settle(p: Pending, data: Buffer): void {
    if (p.done) return
    p.done = true
    this.flights.delete(p.key)
    p.resolve(data)
  }

  private fail(p: Pending, e: unknown): void {
    if (p.done) return
    p.done = true
    this.flights.delete(p.key)
    p.reject(e)
  }

  private noteHit(ref: ChunkRef, key: string, data: Buffer): void {
    this.counters.cacheHits++
    for (const h of this.hooks) { h.onCacheHit?.({ key, bytes: data.length }); h.onChunkReady?.(ref, 'cache') }
  }

  /** Owns the flights in `mine`: every one is settled or failed before this returns. */
  private async resolvePending(mine: Pending[], mode: LoadMode, opts: LoadOptions & { skip?: readonly ChunkRef[] }): Promise<void> {
    const misses: Pending[] = []
    const lookup = async (p: Pending): Promise<void> => {
      let data: Buffer | undefined
      // Background: known absent from the caches' indexes means no read at all (a unit of small
      // files asks for ~20k chunks at once). On-demand reads still look on disk, where another
      // process sharing the cache dir may have put the chunk since we started.
      const absent = p.ref.digest === undefined || (mode === 'background' && this.cache.has?.(p.ref.digest) === false)
      if (!absent && p.ref.digest !== undefined) {
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
    }
    let next = 0
    const lane = async (): Promise<void> => { while (next < mine.length) await lookup(mine[next++] as Pending) }
    await Promise.all(Array.from({ length: Math.min(LOOKUP_LANES, mine.length) }, lane))
    if (misses.length === 0) return
    const byRef = new Map<ChunkRef, Pending>(misses.map((p) => [p.ref, p]))
    const refs = misses.map((p) => p.ref)
    // A given span ([0, landmark) at prefetch, a background unit) is still cut at the span cap,
    // on member boundaries, around members that are streamed instead.
    const spans: Span[] = opts.span
      ? splitSpan(opts.span, refs, this.maxSpanBytes, opts.skip ?? [])
      : planSpans(refs, { mergeGapBytes: this.mergeGapBytes, maxSpanBytes: this.maxSpanBytes })
    try {
      await this.fetchSpans(spans, byRef, mode, opts.signal)
    } catch (e) {
      // fetchSpans settles what it can; anything left (a bug) must still not hang readers.
      for (const p of misses) this.fail(p, chunkError(p.ref, e))
    }
    for (const p of misses) {
      if (!p.done) this.fail(p, new ChunkFetchError(p.ref, 'internal: chunk not covered by any fetched span'))
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
    const one = async (p: Pending): Promise<void> => {
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
      const put = p.ref.digest !== undefined ? this.putCache(p.ref.digest, data, mode) : undefined
      for (const h of this.hooks) h.onChunkReady?.(p.ref, 'fetch')
      this.settle(p, data)
      // Background fetch waits for its writes: it can decode far faster than a disk cache writes,
      // and every queued write holds its chunk (100k small files queued ~400 MB before this).
      if (mode === 'background' && put !== undefined) await put
    }
    // A few decodes at a time, not all members of the span at once: a 4 MiB background unit of
    // small files holds ~20k members, and starting every decode together kept every output alive
    // at the same time (and inflated them all in one event-loop turn, since small members decode
    // synchronously). DECODE_LANES keeps both workers fed; each lane yields to the event loop
    // every YIELD_EVERY decodes so FUSE ops get through.
    let next = 0
    const lane = async (): Promise<void> => {
      let n = 0
      while (next < owned.length) {
        await one(owned[next++] as Pending)
        if (++n % YIELD_EVERY === 0) await new Promise<void>((r) => setImmediate(r))
      }
    }
    await Promise.all(Array.from({ length: Math.min(DECODE_LANES, owned.length) }, lane))
    if (allOk) for (const h of this.hooks) h.onSpanVerified?.(s.offset, s.length)
  }

  // ---- big chunks: streamed, never held whole ----

  /** Bytes [from, to) of a big chunk: from the disk cache by range, or streamed. */
  private async readBig(ref: ChunkRef, from: number, to: number, signal?: AbortSignal): Promise<Buffer> {
    if (to <= from) return Buffer.alloc(0)
    const digest = ref.digest
    const readRange = this.cache.readRange?.bind(this.cache)
    if (digest !== undefined && readRange !== undefined) {
      const fromCache = async (): Promise<Buffer | undefined> => {
        const hit = await readRange(digest, ref.chunkSize, from, to - from)
        if (hit === undefined || hit.length !== to - from) return undefined
        this.counters.cacheHits++
        for (const h of this.hooks) h.onChunkReady?.(ref, 'cache')
        return hit
      }
      const hit = await fromCache()
      if (hit !== undefined) return hit
      this.counters.cacheMisses++
      const end = this.gate?.beginPriority()
      let stored: boolean
      try {
        // The stream is shared by every reader of this chunk; this reader only stops waiting.
        stored = await raceAbort(this.storeBig(ref, 'demand', undefined), signal)
      } finally {
        end?.()
      }
      const again = stored ? await fromCache() : undefined
      if (again !== undefined) return again
    }
    const end = this.gate?.beginPriority()
    try {
      return await this.streamWindow(ref, from, to, signal)
    } finally {
      end?.()
    }
  }

  /**
   * Stream a big chunk into the cache (one stream per chunk however many readers wait for it).
   * Resolves false when the cache cannot store it; rejects when it does not verify.
   */
  private storeBig(ref: ChunkRef, mode: LoadMode, signal: AbortSignal | undefined): Promise<boolean> {
    if (ref.digest === undefined || this.cache.createWriter === undefined) return Promise.resolve(false)
    const key = `big:${keyOf(ref)}`
    const running = this.bigStores.get(key)
    if (running) {
      this.counters.deduplicated++
      // A background stream may be preempted or stopped: an on-demand reader that joined it
      // then streams for itself instead of failing.
      if (running.retryable && mode === 'demand') return running.p.catch(() => this.storeBig(ref, mode, undefined))
      return running.p
    }
    const digest = ref.digest
    const entry = { retryable: mode !== 'demand', p: Promise.resolve(false) }
    entry.p = (async (): Promise<boolean> => {
      try {
        const have = await this.cache.readRange?.(digest, ref.chunkSize, 0, 0)
        if (have !== undefined) return true
        const writer = await (this.cache.createWriter as NonNullable<ChunkCache['createWriter']>)(digest, ref.chunkSize)
        if (writer === undefined) return false
        try {
          await this.streamChunk(ref, { size: ref.chunkSize, digest, sink: (b) => writer.write(b) }, mode, signal)
          await writer.commit()
        } finally {
          await writer.abort()
        }
        return true
      } finally {
        // Removed before anyone sees the outcome, so a retry starts a new stream.
        if (this.bigStores.get(key) === entry) this.bigStores.delete(key)
      }
    })()
    this.bigStores.set(key, entry)
    entry.p.catch(() => undefined)
    return entry.p
  }

  /**
   * Bytes [from, to) of a big chunk with no cache to hold it: streamed, keeping only the
   * windows asked for. Concurrent readers share one stream as long as it has not passed their
   * window yet (kernel read-ahead turns one 4 KiB read into several FUSE reads at once: they
   * must not each inflate the whole chunk); a reader that comes too late starts its own.
   */
  private async streamWindow(ref: ChunkRef, from: number, to: number, signal?: AbortSignal): Promise<Buffer> {
    const key = keyOf(ref)
    const w: Window = { from, to, buf: Buffer.alloc(Math.max(0, to - from)) }
    const running = this.windowStreams.get(key)
    if (running !== undefined && running.pos <= from) {
      this.counters.deduplicated++
      running.windows.add(w)
      await raceAbort(running.done, signal)
      return w.buf
    }
    const ws: WindowStream = { pos: 0, windows: new Set([w]), done: Promise.resolve() }
    const o: StreamDecodeOptions = {
      size: ref.chunkSize,
      digest: ref.digest,
      sink: (part, at) => {
        ws.pos = at + part.length
        for (const x of ws.windows) {
          const a = Math.max(at, x.from)
          const b = Math.min(at + part.length, x.to)
          if (b > a) part.copy(x.buf, a - x.from, a - at, b - at)
        }
      },
    }
    // The stream belongs to every reader riding on it: one reader giving up does not stop it.
    ws.done = this.streamChunk(ref, o, 'demand', undefined).then(() => undefined)
    this.windowStreams.set(key, ws)
    void ws.done.finally(() => { if (this.windowStreams.get(key) === ws) this.windowStreams.delete(key) }).catch(() => undefined)
    await raceAbort(ws.done, signal)
    return w.buf
  }

  /** Fetch a member in pieces and stream-decode it; typed errors, counters and hooks as for spans. */
  private async streamChunk(ref: ChunkRef, o: StreamDecodeOptions, mode: LoadMode, signal: AbortSignal | undefined): Promise<Buffer> {
    const length = ref.compressedEnd - ref.compressedOffset
    const started = performance.now()
    this.counters.fetchRequests++
    let fetched = 0
    const source = this.source
    const counting = {
      size: source.size,
      read: async (off: number, len: number, s?: AbortSignal): Promise<Buffer> => {
        const b = await source.read(off, len, s)
        fetched += b.length
        this.counters.bytesFetched += b.length
        return b
      },
    }
    let outcome: Awaited<ReturnType<typeof streamDecode>>['outcome']
    try {
      outcome = (await streamDecode(rangePieces(counting, ref.compressedOffset, length, this.pieceBytes, signal), o)).outcome
    } catch (e) {
      this.emitFetch({ offset: ref.compressedOffset, length, ranges: 1, chunks: 1, mode, durationMs: performance.now() - started, ok: false })
      const err = new ChunkFetchError(ref, `streaming blob range [${ref.compressedOffset}, ${ref.compressedEnd}) failed after ${fetched} bytes: ${e instanceof Error ? e.message : String(e)}`, { cause: e })
      if (!signal?.aborted) { this.counters.fetchFailures++; this.report(err, mode) }
      throw err
    }
    this.emitFetch({ offset: ref.compressedOffset, length, ranges: 1, chunks: 1, mode, durationMs: performance.now() - started, ok: true })
    if (outcome.kind !== 'ok') {
      const err = chunkError(ref, outcomeError(outcome, ref))
      if (err.code === 'ERR_CHUNK_DIGEST_MISMATCH') this.counters.verifyFailures++
      else this.counters.fetchFailures++
      this.report(err, mode)
      throw err
    }
    // streamDecode checked the whole chunk (exactly chunkSize bytes, hashing to the digest);
    // the window it kept is all this read needs.
    this.counters.chunksDecoded++
    for (const h of this.hooks) h.onChunkReady?.(ref, 'fetch')
    return outcome.data
  }

  // ---- legacy files: verified by the whole-file digest ----

  /**
   * Verify a legacy multi-chunk file against its whole-file digest (streamed, chunk by chunk) and
   * record each chunk's own digest, so from then on its chunks are served and cached like any.
   */
  verifyFile(e: TocEntry, mode: LoadMode = 'demand'): Promise<boolean> {
    const refs = this.index.chunks(e.name)
    if (!refs.some((r) => r.digest === undefined)) return Promise.resolve(true)
    const key = `file:${e.name}`
    const running = this.streams.get(key)
    if (running) return running
    const p = this.verifyFileOnce(e, refs, mode)
    this.streams.set(key, p)
    void p.finally(() => this.streams.delete(key)).catch(() => undefined)
    return p
  }

  private async verifyFileOnce(e: TocEntry, refs: readonly ChunkRef[], mode: LoadMode): Promise<boolean> {
    const fileDigest = e.digest
    const first = refs[0] as ChunkRef
    if (fileDigest === undefined) {
      throw new FailedPreconditionError(`chunk of ${JSON.stringify(e.name)} at offset ${first.chunkOffset} has no digest to verify against (legacy TOC without a file digest); refusing to serve unverified bytes`)
    }
    const whole = createHash('sha256')
    // Small files keep their chunks so the read that asked does not fetch them again.
    const keep = (e.size ?? 0) <= this.maxChunkInMemory
    const kept: Buffer[] = []
    const hashes: string[] = []
    for (const r of refs) {
      const o: StreamDecodeOptions = { size: r.chunkSize, digest: undefined, sink: (b) => { whole.update(b) } }
      if (keep) o.window = { from: 0, to: r.chunkSize }
      const length = r.compressedEnd - r.compressedOffset
      this.counters.fetchRequests++
      const started = performance.now()
      let res: Awaited<ReturnType<typeof streamDecode>>
      try {
        res = await streamDecode(rangePieces(this.source, r.compressedOffset, length, this.pieceBytes), o)
        this.counters.bytesFetched += length
      } catch (err) {
        this.emitFetch({ offset: r.compressedOffset, length, ranges: 1, chunks: 1, mode, durationMs: performance.now() - started, ok: false })
        const fe = new ChunkFetchError(r, `fetching blob range [${r.compressedOffset}, ${r.compressedEnd}) failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
        this.counters.fetchFailures++
        this.report(fe, mode)
        throw fe
      }
      this.emitFetch({ offset: r.compressedOffset, length, ranges: 1, chunks: 1, mode, durationMs: performance.now() - started, ok: true })
      if (res.outcome.kind !== 'ok' || res.hash === undefined) {
        const err = chunkError(r, res.outcome.kind === 'ok' ? new Error('no hash') : outcomeError(res.outcome, r))
        this.counters.fetchFailures++
        this.report(err, mode)
        throw err
      }
      hashes.push(res.hash)
      if (keep) kept.push(res.outcome.data)
    }
    const actual = 'sha256:' + whole.digest('hex')
    if (actual !== fileDigest) {
      this.counters.verifyFailures++
      const err = new ChunkDigestError(e.name, 0, fileDigest, actual)
      this.log.warn({ path: e.name, digest: fileDigest, actual, mode, code: err.code, err: err.message }, 'chunk-read-failed')
      throw err
    }
    refs.forEach((r, i) => {
      r.digest = hashes[i] as string
      this.index.learnChunkDigest(r, r.digest)
      this.counters.chunksDecoded++
      if (keep) this.putCache(r.digest, kept[i] as Buffer, mode)
      for (const h of this.hooks) h.onChunkReady?.(r, 'fetch')
    })
    return true
  }

  private report(err: ChunkFetchError | ChunkVerifyError, mode: LoadMode): void {
    this.log.warn({ digest: err.digest, path: err.path, offset: err.chunkOffset, blobOffset: err.blobOffset, mode, code: err.code, err: err.message }, 'chunk-read-failed')
    for (const h of this.hooks) h.onError?.(err)
  }

  /** Start a cache write (tracked for flush); the promise never rejects. */
  private putCache(key: string, data: Buffer, mode: LoadMode): Promise<void> {
    const p = this.cache.put(key, data, { background: mode === 'background' }).catch((e: unknown) => {
      this.log.warn({ key, err: (e as Error).message }, 'cache-put-failed')
    })
    this.puts.add(p)
    void p.finally(() => this.puts.delete(p))
    return p
  }

  /** Wait until every cache write started so far has finished. */
  async flush(): Promise<void> {
    while (this.puts.size > 0) await Promise.allSettled([...this.puts])
  }

  /** Wait for in-flight loads and cache writes (the reader stays usable). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.flights.values()].map((f) => f.promise))
    await Promise.allSettled([...this.streams.values()])
    await Promise.allSettled([...this.bigStores.values()].map((b) => b.p))
    await Promise.allSettled([...this.windowStreams.values()].map((w) => w.done))
    await this.flush()
  }

  /**
   * Wait for in-flight loads and cache writes, and give the TOC's share of the metadata budget
   * back. The decoder and cache are owned by the caller.
   */
  async close(): Promise<void> {
    await this.settled()
    this.reader.release()
  }
}
