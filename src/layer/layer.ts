/**
 * A resolved eStargz layer: TOC + ChunkReader + prefetch + background fetch, reference-counted.
 *
 * Lifecycle:
 *   openLayer() ....... loads and verifies the TOC (tocDigest) and builds the reader. Nothing is
 *                       fetched beyond the footer and TOC: the layer has not started.
 *   start() ........... once mounted (src/fs/mount-layer.ts), starts without waiting for them the
 *                       prefetch of [0, landmark offset) in one range request, and after it the
 *                       background fetch of the rest. Idempotent. A layer whose mount failed was
 *                       never started, so nothing keeps fetching against a closed blob.
 *   acquire()/close() . take/drop a reference; the last close() releases everything.
 *   evict() ........... release now, whatever the count (the daemon dropping a broken layer).
 *
 * fetchedSize counts blob bytes held locally in verified form, each byte once: the TOC and
 * footer (verified by the TOC digest) at open, each member whose chunk was verified (fetched
 * from this blob, or already in the shared cache — then it needs no fetch), and the tar headers
 * before the first payload once the background fetch fetched them.
 */
import { EstargzReader, type IndexedBlob, type ReaderOptions } from '../estargz/reader.js'
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import type { ExternalTocSource } from '../estargz/external-toc.js'
import type { ChunkRef, LayerIndex } from '../estargz/toc-index.js'
import type { TocEntry, TocLimits } from '../estargz/types.js'
import { FailedPreconditionError, isStargzError, TimeoutError } from '../errors.js'
import type { ChunkCache } from '../cache/types.js'
import { ChunkReader, type MultiRangeSource, type ReaderCounters, type ReaderHooks } from '../reader/chunk-reader.js'
import { childLogger, silentLogger, type Logger } from '../reader/logger.js'
import { PriorityGate } from '../task/priority-gate.js'
import type { FetchUnit } from './background.js'
import { CompactBlob } from '../index/compact-blob.js'
import { CompactIndex } from '../index/compact-index.js'
import type { IndexStore } from '../index/index-store.js'
import type { TocBuilder } from '../index/toc-build.js'
import type { LayerTree } from '../fuse/inode-table.js'
import { FetchedRanges } from './fetched-ranges.js'
import type { Layer, LayerState } from './types.js'
import { LIBRARY_DEFAULTS } from '../config/defaults.js'

export interface OpenLayerOptions {
  /** Compressed layer digest. */
  digest: string
  /** The blob. Ownership passes to the layer once openLayer resolves (closed on release). */
  source: MultiRangeSource
  /** Expected TOC digest (layer annotation); the TOC must hash to it. */
  tocDigest?: string
  /** Where the TOC comes from when the layer's footer says it is external (external-toc.ts). */
  externalToc?: ExternalTocSource
  /** How footer and TOC are loaded (default: from the blob); the resolver's persisted-record path. */
  loadToc?: ReaderOptions['loadToc']
  cache: ChunkCache
  /** Default: the process-wide worker pool. */
  decoder?: ChunkDecoder
  /** Builds compact indexes off the main thread (src/index/toc-build-pool.ts); default inline. */
  tocBuilder?: TocBuilder
  /** Share one gate across layers so any on-demand read pauses all background fetching. */
  gate?: PriorityGate
  /** Config `no_prefetch`. */
  noPrefetch?: boolean
  /** Config `prefetch_timeout_sec`. Default 10. */
  prefetchTimeoutSec?: number
  /** Config `no_background_fetch`. */
  noBackgroundFetch?: boolean
  /** Bytes per background request. Default 4 MiB (PERF_NOTES: ≥ 1 MiB per request). */
  backgroundUnitBytes?: number
  mergeGapBytes?: number
  maxSpanBytes?: number
  allowUnverified?: boolean
  tocLimits?: Partial<TocLimits>
  logger?: Logger
  hooks?: ReaderHooks
  /** Fired once per file, on its first read or open (the filesystem calls layer.noteAccess). */
  onFirstAccess?: (entry: TocEntry) => void
  signal?: AbortSignal
  /**
   * 'compact' (default): the TOC is streamed into a CompactIndex and no TOC objects are kept;
   * 'object': the previous path (whole JSON.parse, TocIndex objects), kept for one release so
   * bench:metadata can measure both. Default: defaultIndexKind().
   */
  index?: 'compact' | 'object'
  /** Persisted indexes by TOC digest (compact only): re-open without fetching the TOC. */
  indexStore?: IndexStore
  /** Per-layer bound on the compact index's bytes (config metadata_layer_budget_mb). */
  maxIndexBytes?: number
}

export interface PrefetchResult {
  status: 'done' | 'skipped' | 'failed'
  /** Bytes requested ([0, landmark offset)), 0 when skipped or everything was cached. */
  bytes: number
  chunks: number
  reason?: string
}

export interface LayerStats {
  reader: ReaderCounters
  prefetch: PrefetchResult | undefined
  backgroundDone: boolean
  refs: number
}

const DEFAULT_UNIT = 4 * 1024 * 1024

/**
 * Which index the mount path builds when the caller does not say: 'object' unless
 * $STARGZ_INDEX=compact. The compact index (src/index) stays opt-in for now: through `stargz
 * mount` the interop corpus read hardlinked files empty with it (test/interop/corpus-mount, CI run
 * 2026-12-01), and its streaming build costs more CPU than JSON.parse on the pull path.
 */
export function defaultIndexKind(): 'object' | 'compact' {
  return process.env.STARGZ_INDEX === 'compact' ? 'compact' : 'object'
}

export async function openLayer(opts: OpenLayerOptions): Promise<StargzLayer> {
  const log = childLogger(opts.logger ?? silentLogger, { component: 'layer', digest: opts.digest })
  const started = performance.now()
  const loadOpts: Parameters<typeof EstargzReader.open>[1] = {}
  if (opts.tocDigest !== undefined) loadOpts.tocDigest = opts.tocDigest
  if (opts.tocLimits !== undefined) loadOpts.limits = opts.tocLimits
  if (opts.signal !== undefined) loadOpts.signal = opts.signal
  if (opts.allowUnverified !== undefined) loadOpts.allowUnverified = opts.allowUnverified
  if (opts.externalToc !== undefined) loadOpts.externalToc = opts.externalToc
  const kind = opts.index ?? defaultIndexKind()
  let reader: IndexedBlob
  let from = 'registry'
  let built: string | undefined
  if (opts.loadToc !== undefined) loadOpts.loadToc = opts.loadToc
  if (kind === 'object') reader = await EstargzReader.open(opts.source, loadOpts)
  else {
    const blob = await CompactBlob.open(opts.source, {
      ...loadOpts,
      what: `layer ${opts.digest}`,
      extra: { layerDigest: opts.digest },
      ...(opts.indexStore === undefined ? {} : { store: opts.indexStore }),
      ...(opts.maxIndexBytes === undefined ? {} : { maxIndexBytes: opts.maxIndexBytes }),
      ...(opts.tocBuilder === undefined ? {} : { builder: opts.tocBuilder }),
    })
    reader = blob
    from = blob.from
    built = blob.builtBy
  }
  const layer = new StargzLayer(opts, reader, log)
  log.info({ entries: reader.index.entryCount, tocDigest: reader.tocDigest, index: kind, from, ...(built === undefined ? {} : { built }), ms: Math.round(performance.now() - started) }, 'layer-opened')
  return layer
}

export class StargzLayer implements Layer {
  readonly digest: string
  readonly tocDigest: string
  readonly index: LayerIndex
  /** The FUSE tree when the index is one (compact): the mount serves it as is. */
  readonly tree: LayerTree | undefined
  readonly chunkReader: ChunkReader
  readonly gate: PriorityGate
  /** Settles (never rejects) when the prefetch finished, failed, or was skipped. */
  prefetchDone: Promise<PrefetchResult> = Promise.resolve({ status: 'skipped', bytes: 0, chunks: 0, reason: 'not started' })
  /** Settles (never rejects) when background fetch completed, failed, was disabled or stopped. */
  backgroundDone: Promise<void> = Promise.resolve()

  private readonly ranges = new FetchedRanges()
  private readonly ownGate: boolean
  private readonly stop = new AbortController()
  /** THE first-access de-duplication (the FUSE ops and reads both report here). */
  private readonly accessed = new Set<string>()
  private readonly accessListeners = new Set<(entry: TocEntry) => void>()
  private started = false
  private prefetchResult: PrefetchResult | undefined
  private backgroundComplete = false
  private refs = 1
  private released: Promise<void> | undefined

  constructor(private readonly opts: OpenLayerOptions, readonly reader: IndexedBlob, private readonly log: Logger) {
    this.digest = opts.digest
    this.tocDigest = reader.tocDigest
    this.index = reader.index
    this.tree = reader.index instanceof CompactIndex ? reader.index : undefined
    this.ownGate = opts.gate === undefined
    this.gate = opts.gate ?? new PriorityGate()
    this.ranges.add(reader.footer.tocOffset, opts.source.size)
    const mark: ReaderHooks = {
      onChunkReady: (ref) => this.ranges.add(ref.compressedOffset, ref.compressedEnd),
      onSpanVerified: (offset, length) => this.ranges.add(offset, offset + length),
    }
    const readerOpts: ConstructorParameters<typeof ChunkReader>[0] = {
      reader,
      source: opts.source,
      cache: opts.cache,
      hooks: opts.hooks ? [mark, opts.hooks] : [mark],
      logger: childLogger(opts.logger ?? silentLogger, { component: 'reader', digest: opts.digest }),
      gate: this.gate,
    }
    if (opts.decoder !== undefined) readerOpts.decoder = opts.decoder
    if (opts.mergeGapBytes !== undefined) readerOpts.mergeGapBytes = opts.mergeGapBytes
    if (opts.maxSpanBytes !== undefined) readerOpts.maxSpanBytes = opts.maxSpanBytes
    if (opts.allowUnverified !== undefined) readerOpts.allowUnverified = opts.allowUnverified
    this.chunkReader = new ChunkReader(readerOpts)
    if (opts.onFirstAccess) this.accessListeners.add(opts.onFirstAccess)
  }

  /**
   * Start prefetch and background fetch; called once the layer is mounted. Idempotent (a layer
   * shared by several mounts starts once); a closed layer does not start.
   */
  start(): void {
    if (this.started || this.released) return
    this.started = true
    this.prefetchDone = this.runPrefetch()
    this.backgroundDone = this.prefetchDone.then(() => this.runBackground())
  }

  get isStarted(): boolean {
    return this.started
  }

  /** A file was opened or read: the first time for each file, tell the listeners. */
  noteAccess(entry: TocEntry): void {
    if (this.accessed.has(entry.name)) return
    this.accessed.add(entry.name)
    for (const l of this.accessListeners) {
      try {
        l(entry)
      } catch (e) {
        this.log.warn({ path: entry.name, err: (e as Error).message }, 'first-access-hook-failed')
      }
    }
  }

  /** Listen for first accesses (optimize records them); returns the unsubscribe. */
  onFirstAccess(listener: (entry: TocEntry) => void): () => void {
    this.accessListeners.add(listener)
    return () => { this.accessListeners.delete(listener) }
  }

  get closed(): boolean {
    return this.released !== undefined
  }

  async read(name: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    if (this.released) throw new FailedPreconditionError(`layer ${this.digest} is closed; cannot read ${JSON.stringify(name)} at offset ${offset}`)
    const entry = this.index.resolve(name)
    if (entry) this.noteAccess(entry)
    return this.chunkReader.read(name, offset, length, signal)
  }

  state(): LayerState {
    const size = this.opts.source.size
    const fetchedSize = Math.min(size, this.ranges.total)
    return { digest: this.digest, size, fetchedSize, fetchedPercent: size === 0 ? 100 : (fetchedSize / size) * 100 }
  }

  stats(): LayerStats {
    return { reader: this.chunkReader.stats(), prefetch: this.prefetchResult, backgroundDone: this.backgroundComplete, refs: this.refs }
  }

  /** Take another reference (another mount or user of this layer). */
  acquire(): this {
    if (this.released) throw new FailedPreconditionError(`layer ${this.digest} is closed; cannot acquire it`)
    this.refs++
    return this
  }

  /** Drop one reference; the last one releases the layer. Extra calls are no-ops. */
  async close(): Promise<void> {
    if (this.released) return this.released
    if (this.refs > 0) this.refs--
    if (this.refs > 0) return
    return this.release()
  }

  /** Release now regardless of references: stop fetching, wait for work in hand, close the source. */
  evict(): Promise<void> {
    this.refs = 0
    return this.release()
  }

  private release(): Promise<void> {
    this.released ??= (async () => {
      this.accessListeners.clear()
      this.stop.abort(new FailedPreconditionError(`layer ${this.digest} closed`))
      await this.prefetchDone
      await this.backgroundDone
      await this.chunkReader.close()
      if (this.ownGate) this.gate.close()
      try {
        await this.opts.source.close?.()
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'source-close-failed')
      }
      this.log.info({ ...this.state() }, 'layer-closed')
    })()
    return this.released
  }

  private async runPrefetch(): Promise<PrefetchResult> {
    const r = await this.prefetch()
    this.prefetchResult = r
    return r
  }

  private async prefetch(): Promise<PrefetchResult> {
    if (this.opts.noPrefetch) return { status: 'skipped', bytes: 0, chunks: 0, reason: 'no_prefetch' }
    const landmark = this.index.landmarkOffset
    if (this.index.noPrefetchLandmark || landmark === undefined) {
      return { status: 'skipped', bytes: 0, chunks: 0, reason: this.index.noPrefetchLandmark ? 'no-prefetch landmark' : 'no landmark' }
    }
    const end = landmark
    // Payloads are in blob order, so their ends increase: stop at the first past the landmark.
    const refs: ChunkRef[] = []
    for (let i = 0; i < this.index.payloadCount; i++) {
      const p = this.index.payload(i)
      if (p.compressedEnd > end) break
      refs.push(p)
    }
    if (end <= 0 || refs.length === 0) return { status: 'skipped', bytes: 0, chunks: 0, reason: 'nothing before the landmark' }
    const timeoutSec = this.opts.prefetchTimeoutSec ?? LIBRARY_DEFAULTS.prefetchTimeoutMs / 1000
    // Our own timer rather than AbortSignal.timeout: that one is unref'd, so a process with
    // nothing else to do would exit instead of timing out; this one is cleared when done.
    const timeout = new AbortController()
    const timer = setTimeout(() => timeout.abort(new TimeoutError(`prefetch of ${end} bytes of layer ${this.digest} took longer than ${timeoutSec} s (prefetch_timeout_sec)`)), timeoutSec * 1000)
    const signal = AbortSignal.any([this.stop.signal, timeout.signal])
    const started = performance.now()
    const before = this.chunkReader.stats().bytesFetched
    try {
      await this.chunkReader.loadChunks(refs, { mode: 'prefetch', span: { offset: 0, length: end }, signal })
    } catch (e) {
      if (this.stop.signal.aborted) return { status: 'skipped', bytes: 0, chunks: refs.length, reason: 'layer closed' }
      const reason = isStargzError(e) || e instanceof Error ? e.message : String(e)
      this.log.warn({ bytes: end, chunks: refs.length, err: reason, ms: Math.round(performance.now() - started) }, 'prefetch-failed')
      return { status: 'failed', bytes: end, chunks: refs.length, reason }
    } finally {
      clearTimeout(timer)
    }
    const bytes = this.chunkReader.stats().bytesFetched - before
    this.log.info({ bytes, chunks: refs.length, ms: Math.round(performance.now() - started) }, 'prefetch-done')
    return { status: 'done', bytes, chunks: refs.length }
  }

  private async runBackground(): Promise<void> {
    if (this.opts.noBackgroundFetch || this.stop.signal.aborted) return
    const started = performance.now()
    const units = fetchUnits(this.index, this.reader.footer.tocOffset, this.opts.backgroundUnitBytes ?? DEFAULT_UNIT)
    const firstPayload = this.index.payloadCount > 0 ? this.index.payload(0).compressedOffset : this.reader.footer.tocOffset
    try {
      for (const u of units) {
        if (this.stop.signal.aborted) return
        if (this.ranges.covers(u.offset, u.end)) continue
        await this.gate.runBackground(async (signal) => {
          const missing = u.refs.filter((r) => !this.ranges.covers(r.compressedOffset, r.compressedEnd))
          const headersMissing = u.offset === 0 && !this.ranges.covers(0, firstPayload)
          if (headersMissing) {
            // One request for the whole first unit also brings the tar headers that precede
            // the first payload; they are never served, only counted (they are in the TOC).
            await this.chunkReader.loadChunks(missing, { mode: 'background', signal, span: { offset: u.offset, length: u.end - u.offset } })
            // Every missing chunk was cached already, so the unit was not fetched: get the headers.
            if (!this.ranges.covers(0, firstPayload)) {
              await this.chunkReader.fetchRaw(0, firstPayload, signal)
              this.ranges.add(0, firstPayload)
            }
          } else if (missing.length > 0) {
            await this.chunkReader.loadChunks(missing, { mode: 'background', signal })
          }
        }, this.stop.signal)
      }
      this.backgroundComplete = true
      this.log.info({ ...this.state(), ms: Math.round(performance.now() - started) }, 'background-fetch-done')
    } catch (e) {
      if (this.stop.signal.aborted) return
      this.log.warn({ err: (e as Error).message, ...this.state() }, 'background-fetch-failed')
    }
  }
}

/**
 * background.ts's planUnits, one unit at a time: only the refs of the unit being fetched exist
 * (a compact index makes them on demand), not one object per payload for the whole fetch.
 */
function* fetchUnits(index: LayerIndex, tocOffset: number, unitBytes: number): Generator<FetchUnit> {
  let cur: FetchUnit = { offset: 0, end: 0, refs: [] }
  for (let i = 0; i < index.payloadCount; i++) {
    const p = index.payload(i)
    if (cur.refs.length > 0 && cur.end - cur.offset >= unitBytes) {
      yield cur
      cur = { offset: p.compressedOffset, end: p.compressedOffset, refs: [] }
    }
    cur.refs.push(p)
    cur.end = p.compressedEnd
  }
  cur.end = Math.max(cur.end, tocOffset)
  if (cur.end > cur.offset) yield cur
}
