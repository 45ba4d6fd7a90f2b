/**
 * A plain gzip layer served through its gzip index, as a `Layer` the LayerResolver hands out like
 * an eStargz one: reference-counted (acquire/close/evict), the resolver's chunk cache, decode pool
 * and priority gate, mounted through mountLayer() (which calls start()). The file table becomes a
 * TocIndex (names cleaned as the eStargz reader cleans them); reads go to GzIndexReader, where
 * every byte served is checked against a digest recorded at index time.
 *
 * start(): no prefetch (a plain gzip layer has no landmark); background fetch walks the spans in
 * order through the gate, as eStargz background fetch walks its units, so a fully fetched layer
 * keeps serving from the cache.
 */
import { FailedPreconditionError, NotFoundError, errorMessage } from '../errors.js'
import type { ChunkCache } from '../cache/types.js'
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import { cleanEntryName } from '../estargz/entry-order.js'
import { TocIndex } from '../estargz/toc-index.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, type RangeSource, type TocEntry } from '../estargz/types.js'
import { FetchedRanges } from '../layer/fetched-ranges.js'
import type { Layer, LayerState } from '../layer/types.js'
import { childLogger, silentLogger, type Logger } from '../reader/logger.js'
import type { ReaderHooks } from '../reader/types.js'
import type { PriorityGate } from '../task/priority-gate.js'
import type { GzFile, GzIndex } from './format.js'
import { GzIndexReader } from './reader.js'
import { spanByteRange } from './span-inflate.js'

export interface GzIndexLayerOptions {
  cache?: ChunkCache
  decoder?: ChunkDecoder
  gate?: PriorityGate
  hooks?: ReaderHooks
  noBackgroundFetch?: boolean
  logger?: Logger
}

/** What StargzLayer.stats() reports, for the callers that read it through the resolver. */
export interface GzIndexLayerStats {
  prefetch: undefined
  backgroundDone: boolean
  refs: number
  spansFetched: number
  bytesFetched: number
}

export class GzIndexLayer implements Layer {
  readonly index: TocIndex
  readonly tocDigest: string
  /** A gzip layer has no prefetch landmark: settled at once. */
  readonly prefetchDone = Promise.resolve({ status: 'skipped' as const, bytes: 0, chunks: 0, reason: 'plain gzip layer' })
  backgroundDone: Promise<void> = Promise.resolve()
  readonly reader: GzIndexReader
  private readonly files = new Map<string, GzFile>()
  private readonly ranges = new FetchedRanges()
  private readonly stop = new AbortController()
  private readonly log: Logger
  private readonly accessed = new Set<string>()
  private readonly accessListeners = new Set<(entry: TocEntry) => void>()
  private refs = 1
  private started = false
  private backgroundComplete = false
  private released: Promise<void> | undefined
  private readonly spanByKey: Map<string, number>

  /** `indexDigest` (the index blob's digest) stands where eStargz has the TOC digest. Owns `source`. */
  constructor(readonly digest: string, readonly gz: GzIndex, indexDigest: string, private readonly source: RangeSource, private readonly o: GzIndexLayerOptions = {}) {
    this.tocDigest = indexDigest
    this.spanByKey = new Map(gz.spans.map((s, i) => [`sha256:${s.sha256}`, i]))
    this.log = childLogger(o.logger ?? silentLogger, { component: 'gzindex-layer', digest })
    const ranges = this.ranges
    const spanOf = (key: string): void => {
      const i = this.spanByKey.get(key)
      if (i !== undefined) { const r = spanByteRange(gz.spans[i]!); ranges.add(r.offset, r.offset + r.length) }
    }
    const user = o.hooks
    const hooks: ReaderHooks = {
      ...user,
      onCacheHit: (ev) => { spanOf(ev.key); user?.onCacheHit?.(ev) },
      onFetch: (ev) => { if (ev.ok) ranges.add(ev.offset, ev.offset + ev.length); user?.onFetch?.(ev) },
    }
    this.reader = new GzIndexReader(gz, source, {
      ...(o.cache === undefined ? {} : { cache: o.cache }),
      ...(o.decoder === undefined ? {} : { decoder: o.decoder }),
      ...(o.gate === undefined ? {} : { gate: o.gate }),
      hooks,
    })
    const byName = new Map<string, TocEntry>()
    for (const f of gz.files) {
      const name = cleanEntryName(f.name)
      if (name === '' && f.type !== 'dir') continue
      const e: TocEntry = { name, type: f.type, mode: f.mode & 0o7777, uid: f.uid, gid: f.gid, modtime: new Date(f.mtime * 1000).toISOString() }
      if (f.type === 'reg') { e.size = f.size; e.digest = `sha256:${f.sha256}`; this.files.set(name, f) }
      if (f.type === 'symlink') e.linkName = f.linkName!
      if (f.type === 'hardlink') e.linkName = cleanEntryName(f.linkName!)
      if (f.type === 'char' || f.type === 'block') { e.devMajor = f.devMajor ?? 0; e.devMinor = f.devMinor ?? 0 }
      if (f.xattrs) e.xattrs = f.xattrs
      if (f.uname) e.userName = f.uname
      if (f.gname) e.groupName = f.gname
      byName.delete(name) // a later entry replaces an earlier one, as on extraction
      byName.set(name, e)
    }
    this.index = new TocIndex({ version: 1, entries: [...byName.values()] }, 0, { prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK })
  }

  get closed(): boolean { return this.released !== undefined }
  get isStarted(): boolean { return this.started }

  start(): void {
    if (this.started || this.released) return
    this.started = true
    this.backgroundDone = this.runBackground()
  }

  noteAccess(entry: TocEntry): void {
    if (this.accessed.has(entry.name)) return
    this.accessed.add(entry.name)
    for (const l of this.accessListeners) {
      try { l(entry) } catch (e) { this.log.warn({ path: entry.name, err: errorMessage(e) }, 'first-access-hook-failed') }
    }
  }

  onFirstAccess(listener: (entry: TocEntry) => void): () => void {
    this.accessListeners.add(listener)
    return () => { this.accessListeners.delete(listener) }
  }

  async read(name: string, offset: number, length: number): Promise<Buffer> {
    if (this.released) throw new FailedPreconditionError(`layer ${this.digest} is closed; cannot read ${JSON.stringify(name)} at offset ${offset}`)
    const e = this.index.resolve(name)
    const f = e ? this.files.get(e.name) : undefined
    if (!e || !f) throw new NotFoundError(`no regular file ${JSON.stringify(name)} in layer ${this.digest}`)
    this.noteAccess(e)
    return this.reader.read(f, offset, length)
  }

  state(): LayerState {
    const size = this.source.size
    const fetched = Math.min(this.ranges.total, size)
    return { digest: this.digest, size, fetchedSize: fetched, fetchedPercent: size === 0 ? 100 : (100 * fetched) / size }
  }

  stats(): GzIndexLayerStats {
    return { prefetch: undefined, backgroundDone: this.backgroundComplete, refs: this.refs, spansFetched: this.reader.stats.spansFetched, bytesFetched: this.reader.stats.bytesFetched }
  }

  acquire(): this {
    if (this.released) throw new FailedPreconditionError(`layer ${this.digest} is closed; cannot acquire it`)
    this.refs++
    return this
  }

  async close(): Promise<void> {
    if (this.released) return this.released
    if (this.refs > 0) this.refs--
    if (this.refs > 0) return
    return this.release()
  }

  evict(): Promise<void> {
    this.refs = 0
    return this.release()
  }

  private release(): Promise<void> {
    this.released ??= (async () => {
      this.accessListeners.clear()
      this.stop.abort(new FailedPreconditionError(`layer ${this.digest} closed`))
      await this.backgroundDone
      try { await this.source.close?.() } catch (e) { this.log.warn({ err: errorMessage(e) }, 'source-close-failed') }
      this.log.info({ ...this.state() }, 'layer-closed')
    })()
    return this.released
  }

  private async runBackground(): Promise<void> {
    const gate = this.o.gate
    if (this.o.noBackgroundFetch || gate === undefined || this.stop.signal.aborted) return
    const started = performance.now()
    try {
      for (let i = 0; i < this.gz.spans.length; i++) {
        if (this.stop.signal.aborted) return
        const r = spanByteRange(this.gz.spans[i]!)
        if (this.ranges.covers(r.offset, r.offset + r.length)) continue
        await gate.runBackground(() => this.reader.span(i, 'background'), this.stop.signal)
      }
      this.backgroundComplete = true
      this.log.info({ ...this.state(), ms: Math.round(performance.now() - started) }, 'background-fetch-done')
    } catch (e) {
      if (this.stop.signal.aborted) return
      this.log.warn({ err: errorMessage(e), ...this.state() }, 'background-fetch-failed')
    }
  }
}
