/**
 * The owner of layers, their blobs, the chunk cache and the decode pool (the reference's
 * fs/layer resolver): layers are resolved once per layer digest, reference-counted, and kept for
 * a TTL after the last release so a layer removed and pulled again soon is not resolved twice.
 *
 *   const lease = await resolver.resolve({ digest, tocDigest, open: () => client.blob(ref, digest) })
 *   …mount it (src/fs/mount-layer.ts), which calls lease.layer.start() once mounted…
 *   await lease.release()                 // drop this holder's reference (TTL starts at 0)
 *   await lease.release({ evict: true })  // …and evict now if nobody else holds it (failures)
 *   await resolver.close()                // evict everything; close the cache and the pool
 *
 * Ownership: the blob `open` returns belongs to the resolver from that moment (closed if the TOC
 * does not load, else by its layer on release). Layers handed out have NOT started: prefetch and
 * background fetch begin only when the mount calls start().
 */
import type { ChunkCache } from '../cache/types.js'
import { LIBRARY_DEFAULTS } from '../config/defaults.js'
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import type { ExternalTocSource } from '../estargz/external-toc.js'
import type { TocLimits } from '../estargz/types.js'
import { FailedPreconditionError, UnavailableError, errorMessage } from '../errors.js'
import type { MultiRangeSource, ReaderHooks } from '../reader/chunk-reader.js'
import { childLogger, silentLogger, type Logger } from '../reader/logger.js'
import { WorkerChunkDecoder } from '../reader/worker-decoder.js'
import { PriorityGate } from '../task/priority-gate.js'
import { raceAbort } from '../task/race-abort.js'
import { defaultIndexKind, openLayer, type OpenLayerOptions, type StargzLayer } from './layer.js'
import { mediaTypeOf, type LayerRecord, type LayerStore } from './layer-store.js'
import { loadToc, tocFromJson, type LoadedToc, type LoadTocOptions } from '../estargz/toc-read.js'
import type { RangeSource } from '../estargz/types.js'
import type { Layer, LayerLease } from './types.js'
import { GzIndexLayer } from '../gzindex/layer.js'
import type { FoundIndex, GzIndexFinder } from '../gzindex/artifact.js'
import { checkIndexFor } from '../gzindex/format.js'

/** What a resolution gives: an eStargz layer, or a plain gzip layer served through its gzip index. */
export type ResolvedLayer = StargzLayer | GzIndexLayer

/** resolve_result_entry_ttl_sec's default (120 s, the reference's). */
export const DEFAULT_LAYER_TTL_MS = LIBRARY_DEFAULTS.layerTtlMs

/** How every layer of this resolver fetches (config: noprefetch, prefetch_timeout_sec, …). */
export type LayerFetchOptions = Pick<OpenLayerOptions,
  'noPrefetch' | 'prefetchTimeoutSec' | 'noBackgroundFetch' | 'backgroundUnitBytes' | 'mergeGapBytes' | 'maxSpanBytes' | 'allowUnverified' | 'indexStore' | 'maxIndexBytes' | 'tocBuilder'>

export interface LayerResolverOptions extends LayerFetchOptions {
  /** Owned: closed by close(). */
  cache: ChunkCache
  /** Default: a pool the resolver creates and closes. A pool passed in stays the caller's. */
  decoder?: ChunkDecoder
  /** Default: a gate the resolver creates and closes. A gate passed in stays the caller's. */
  gate?: PriorityGate
  /** Keep a released layer this long (0: release at once). Default resolve_result_entry_ttl_sec's. */
  ttlMs?: number
  tocLimits?: Partial<TocLimits>
  logger?: Logger
  /** Reader hooks of each layer (metrics), by layer digest. */
  hooksFor?: (digest: string) => ReaderHooks | undefined
  /**
   * Persisted layer records (owned: closed by close()). A layer whose TOC verified from the
   * registry is recorded; the next resolution of it (a restart) opens from the record and asks
   * the registry only for chunks the cache lacks. Needs LayerSpec.tocDigest and openKnown.
   */
  store?: LayerStore
}

export interface LayerSpec {
  /** Compressed layer digest: the cache key. */
  digest: string
  /** Expected TOC digest (the layer annotation). */
  tocDigest?: string
  /** Where the TOC is when the footer says it is not in the blob (external TOC). */
  externalToc?: ExternalTocSource
  /** Opens the blob; called at most once per resolution. */
  open(signal: AbortSignal): Promise<MultiRangeSource>
  /**
   * Opens the blob when its size is known from a persisted record, with no request (reads of
   * chunks go to the registry, as from `open`'s blob). Without it the record is not used.
   */
  openKnown?(size: number, signal: AbortSignal): Promise<MultiRangeSource>
  /**
   * A layer without a TOC digest may be plain gzip with a published gzip index (src/gzindex):
   * looked up first, once the blob is open; none found → `only` refuses, else eStargz as before.
   */
  gzIndex?: { find: GzIndexFinder; only?: boolean }
}

export interface ResolverStats {
  /** Layers resolved or resolving (held or within their TTL). */
  layers: number
  /** References handed out and not yet released. */
  refs: number
  /** Blobs opened and not yet closed. */
  openBlobs: number
  /** Layers started (prefetch/background fetch) and not yet released. */
  started: number
}

interface Entry {
  digest: string
  refs: number
  ready: Promise<ResolvedLayer>
  layer: ResolvedLayer | undefined
  /** Aborts a resolution nobody waits for any more. */
  abort: AbortController
  timer: NodeJS.Timeout | undefined
}

export class LayerResolver {
  private readonly entries = new Map<string, Entry>()
  private readonly decoder: ChunkDecoder
  private readonly ownDecoder: WorkerChunkDecoder | undefined
  private readonly gate: PriorityGate
  private readonly ownGate: boolean
  private readonly ttlMs: number
  private readonly log: Logger
  private readonly releasing = new Set<Promise<void>>()
  private openBlobs = 0
  private closing: Promise<void> | undefined

  constructor(private readonly o: LayerResolverOptions) {
    this.ownDecoder = o.decoder === undefined ? new WorkerChunkDecoder() : undefined
    this.decoder = o.decoder ?? (this.ownDecoder as WorkerChunkDecoder)
    this.ownGate = o.gate === undefined
    this.gate = o.gate ?? new PriorityGate()
    this.ttlMs = Math.max(0, o.ttlMs ?? DEFAULT_LAYER_TTL_MS)
    this.log = childLogger(o.logger ?? silentLogger, { component: 'resolver' })
  }

  /** The gate every layer of this resolver shares (mounts run as priority work through it). */
  get priorityGate(): PriorityGate {
    return this.gate
  }

  /** A reference to the layer of `spec.digest`, resolving it unless held or within its TTL. */
  async resolve(spec: LayerSpec, signal?: AbortSignal): Promise<LayerLease<ResolvedLayer>> {
    if (this.closing) throw new UnavailableError(`layer resolver is closed; cannot resolve ${spec.digest}`)
    signal?.throwIfAborted()
    let e = this.entries.get(spec.digest)
    if (e === undefined || (e.layer?.closed ?? false)) {
      e = this.load(spec)
      this.entries.set(spec.digest, e)
    }
    const entry = e
    entry.refs++
    if (entry.timer) { clearTimeout(entry.timer); entry.timer = undefined }
    let layer: ResolvedLayer
    try {
      layer = await raceAbort(entry.ready, signal)
    } catch (err) {
      await this.drop(entry, true)
      throw err
    }
    let released = false
    return {
      layer,
      release: async (opts?: { evict?: boolean }) => {
        if (released) return
        released = true
        await this.drop(entry, opts?.evict ?? false)
      },
    }
  }

  stats(): ResolverStats {
    let refs = 0
    let started = 0
    for (const e of this.entries.values()) {
      refs += e.refs
      if (e.layer?.isStarted && !e.layer.closed) started++
    }
    return { layers: this.entries.size, refs, openBlobs: this.openBlobs, started }
  }

  /** Evict every layer (whatever its references), then close the pool, the gate, the cache. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const all = [...this.entries.values()]
      for (const e of all) {
        if (e.timer) clearTimeout(e.timer)
        e.abort.abort(new UnavailableError(`layer resolver closed while resolving ${e.digest}`))
      }
      await Promise.all(all.map((e) => this.evict(e)))
      await Promise.all([...this.releasing])
      await this.ownDecoder?.close()
      await this.o.store?.close()
      if (this.ownGate) this.gate.close()
      await this.o.cache.close().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'cache-close-failed'))
    })()
    return this.closing
  }

  private load(spec: LayerSpec): Entry {
    const abort = new AbortController()
    const entry: Entry = { digest: spec.digest, refs: 0, ready: Promise.resolve(undefined as unknown as ResolvedLayer), layer: undefined, abort, timer: undefined }
    entry.ready = (async () => {
      // A persisted compact index (the default index) knows the blob size: the blob opens with no
      // request and the index is re-opened in place, so a restart needs no registry. Should that
      // fail (a damaged index is rebuilt from the blob), the record or the registry is tried next.
      const indexed = await this.indexedSize(spec)
      if (indexed !== undefined && spec.openKnown !== undefined) {
        const open = spec.openKnown.bind(spec)
        try {
          const layer = await this.openFrom(spec, abort, (sig) => open(indexed, sig), loadToc)
          this.log.debug({ digest: spec.digest, tocDigest: spec.tocDigest }, 'layer-opened-from-index')
          return layer
        } catch (err) {
          if (abort.signal.aborted) throw err
          this.log.warn({ digest: spec.digest, tocDigest: spec.tocDigest, err: errorMessage(err) }, 'layer-index-open-failed')
        }
      }
      const rec = await this.localRecord(spec)
      if (rec !== undefined && spec.openKnown !== undefined) {
        const open = spec.openKnown.bind(spec)
        let refused: unknown
        const fromRecord = (_src: RangeSource, o: LoadTocOptions): Promise<LoadedToc> => {
          try {
            return Promise.resolve(tocFromJson(rec.json, rec.footer, o))
          } catch (err) {
            refused = err
            throw err
          }
        }
        try {
          // The record holds the TOC's JSON, so it is served through the object index.
          const layer = await this.openFrom(spec, abort, (sig) => open(rec.size, sig), fromRecord, undefined, 'object')
          this.log.debug({ digest: spec.digest, tocDigest: rec.tocDigest }, 'layer-opened-from-record')
          return layer
        } catch (err) {
          if (refused === undefined) throw err
          // The record's TOC did not pass the checks a blob's TOC passes: never serve it.
          this.log.warn({ digest: spec.digest, tocDigest: rec.tocDigest, err: errorMessage(err) }, 'layer-record-refused')
          await this.o.store?.remove(rec.tocDigest).catch(() => undefined)
        }
      }
      const gzFound = spec.gzIndex === undefined ? undefined : await this.findGzIndex(spec, abort.signal)
      // Recorded also when no annotation named the digest yet (a look-ahead): a record is filed
      // under the digest its TOC bytes hash to and used only for a layer whose annotation names it.
      const store = this.o.store
      const fromBlob = (src: RangeSource, o: LoadTocOptions): Promise<LoadedToc> => loadToc(src, o).then((l) => {
        store?.put(recordOf(spec.digest, src.size, l))
        return l
      })
      return this.openFrom(spec, abort, (sig) => spec.open(sig), fromBlob, gzFound)
    })()
    void entry.ready.then((l) => { entry.layer = l }, () => undefined)
    // A failed resolution is never cached: the next resolve tries again.
    entry.ready.catch(() => { if (this.entries.get(spec.digest) === entry) this.entries.delete(spec.digest) })
    return entry
  }

  /** The blob size kept with this layer's persisted compact index, if there is one. */
  private async indexedSize(spec: LayerSpec): Promise<number | undefined> {
    const store = this.o.indexStore
    if (store === undefined || spec.tocDigest === undefined || spec.openKnown === undefined) return undefined
    if (defaultIndexKind() !== 'compact') return undefined
    return store.knownSize(spec.tocDigest).catch(() => undefined)
  }

  /** The persisted record for this layer, if any. A damaged one is logged, removed, treated as absent. */
  private async localRecord(spec: LayerSpec): Promise<LayerRecord | undefined> {
    const store = this.o.store
    if (store === undefined || spec.tocDigest === undefined || spec.openKnown === undefined) return undefined
    try {
      return await store.get(spec.tocDigest, spec.digest)
    } catch (err) {
      this.log.warn({ digest: spec.digest, tocDigest: spec.tocDigest, err: errorMessage(err) }, 'layer-record-refused')
      await store.remove(spec.tocDigest).catch(() => undefined)
      return undefined
    }
  }

  private async openFrom(spec: LayerSpec, abort: AbortController, openBlob: (signal: AbortSignal) => Promise<MultiRangeSource>, load: NonNullable<OpenLayerOptions['loadToc']>, gzFound?: FoundIndex, index?: 'object'): Promise<ResolvedLayer> {
    // Stop waiting for the blob on abort (close, abandoned): an open that lands later is
    // closed at once instead of leaking.
    const opening = openBlob(abort.signal)
    let raw: MultiRangeSource
    try {
      raw = await raceAbort(opening, abort.signal)
    } catch (err) {
      void opening.then((b) => b.close?.(), () => undefined).catch(() => undefined)
      throw err
    }
    const blob = this.counted(raw)
    try {
      const hooks = this.o.hooksFor?.(spec.digest)
      const opts: OpenLayerOptions = {
        digest: spec.digest,
        source: blob,
        cache: this.o.cache,
        decoder: this.decoder,
        gate: this.gate,
        signal: abort.signal,
        ...pick(this.o),
        ...(this.o.logger === undefined ? {} : { logger: this.o.logger }),
        ...(this.o.tocLimits === undefined ? {} : { tocLimits: this.o.tocLimits }),
        ...(hooks === undefined ? {} : { hooks }),
        ...(spec.tocDigest === undefined ? {} : { tocDigest: spec.tocDigest }),
        ...(spec.externalToc === undefined ? {} : { externalToc: spec.externalToc }),
        loadToc: load,
        ...(index === undefined ? {} : { index }),
      }
      // Opening a layer counts as on-demand work: background fetch of the layers already mounted
      // waits for the grace period after it, as it does after reads (issue #13: with no priority
      // work seen, every layer's background fetch started before the workload's first read).
      return gzFound !== undefined ? this.gzIndexLayer(spec, gzFound, blob, hooks) : await this.gate.runPriority(() => openLayer(opts))
    } catch (err) {
      await blob.close?.().catch(() => undefined)
      throw err
    }
  }

  /**
   * The layer's published gzip index, looked up before the blob is opened (a plain gzip layer
   * without one costs one manifest request); undefined when there is none (`only`: refused).
   */
  private async findGzIndex(spec: LayerSpec, signal: AbortSignal): Promise<FoundIndex | undefined> {
    const gz = spec.gzIndex as NonNullable<LayerSpec['gzIndex']>
    const found = await this.gate.runPriority(() => gz.find(spec.digest, signal))
    if (found === undefined) {
      this.log.info({ digest: spec.digest }, 'gzindex-not-found')
      if (gz.only) throw new FailedPreconditionError(`layer ${spec.digest} has no containerd.io/snapshot/stargz/toc.digest annotation and no gzip index is published for it; refusing an unverifiable TOC`)
    }
    return found
  }

  /** A plain gzip layer served through its index (same cache, pool and gate); owns `blob` once made. */
  private gzIndexLayer(spec: LayerSpec, found: FoundIndex, blob: MultiRangeSource, hooks: ReaderHooks | undefined): GzIndexLayer {
    checkIndexFor(found.index, { digest: spec.digest, size: blob.size })
    this.log.info({ digest: spec.digest, index: found.blobDigest, spans: found.index.spans.length, files: found.index.files.length }, 'gzindex-layer')
    return new GzIndexLayer(spec.digest, found.index, found.blobDigest, blob, {
      cache: this.o.cache, decoder: this.decoder, gate: this.gate,
      ...(hooks === undefined ? {} : { hooks }),
      ...(this.o.noBackgroundFetch === undefined ? {} : { noBackgroundFetch: this.o.noBackgroundFetch }),
      ...(this.o.logger === undefined ? {} : { logger: this.o.logger }),
    })
  }

  /** Wrap a blob so the resolver knows how many it holds open (tests count them). */
  private counted(blob: MultiRangeSource): MultiRangeSource {
    this.openBlobs++
    let closed = false
    const close = async (): Promise<void> => {
      if (closed) return
      closed = true
      this.openBlobs--
      await blob.close?.()
    }
    const wrapped: MultiRangeSource = {
      get size() { return blob.size },
      get tailLength() { return blob.tailLength },
      read: (offset, length, signal) => blob.read(offset, length, signal),
      close,
    }
    if (blob.readRanges) wrapped.readRanges = (ranges, signal) => (blob.readRanges as NonNullable<MultiRangeSource['readRanges']>).call(blob, ranges, signal)
    return wrapped
  }

  private async drop(e: Entry, evict: boolean): Promise<void> {
    if (e.refs > 0) e.refs--
    if (e.refs > 0) return
    if (e.layer === undefined) {
      // Still resolving and nobody waits: stop it (its failure path closes the blob).
      e.abort.abort(new UnavailableError(`resolution of ${e.digest} abandoned`))
      await e.ready.catch(() => undefined)
      if (e.refs > 0) return
    }
    if (evict || this.ttlMs === 0 || this.closing) return this.evict(e)
    e.timer = setTimeout(() => { e.timer = undefined; if (e.refs === 0) void this.evict(e) }, this.ttlMs)
    // A layer kept for later must not keep the process alive.
    e.timer.unref()
  }

  private evict(e: Entry): Promise<void> {
    if (this.entries.get(e.digest) === e) this.entries.delete(e.digest)
    const p = e.ready.then((l) => l.evict(), () => undefined).then(() => undefined, (err: unknown) => {
      this.log.warn({ digest: e.digest, err: errorMessage(err) }, 'layer-evict-failed')
    })
    this.releasing.add(p)
    void p.finally(() => this.releasing.delete(p))
    return p
  }
}

function pick(o: LayerFetchOptions): LayerFetchOptions {
  const out: LayerFetchOptions = {}
  if (o.noPrefetch !== undefined) out.noPrefetch = o.noPrefetch
  if (o.prefetchTimeoutSec !== undefined) out.prefetchTimeoutSec = o.prefetchTimeoutSec
  if (o.noBackgroundFetch !== undefined) out.noBackgroundFetch = o.noBackgroundFetch
  if (o.backgroundUnitBytes !== undefined) out.backgroundUnitBytes = o.backgroundUnitBytes
  if (o.mergeGapBytes !== undefined) out.mergeGapBytes = o.mergeGapBytes
  if (o.maxSpanBytes !== undefined) out.maxSpanBytes = o.maxSpanBytes
  if (o.allowUnverified !== undefined) out.allowUnverified = o.allowUnverified
  if (o.indexStore !== undefined) out.indexStore = o.indexStore
  if (o.maxIndexBytes !== undefined) out.maxIndexBytes = o.maxIndexBytes
  if (o.tocBuilder !== undefined) out.tocBuilder = o.tocBuilder
  return out
}

function recordOf(blobDigest: string, size: number, l: LoadedToc): LayerRecord {
  return { tocDigest: l.tocDigest, blobDigest, size, mediaType: mediaTypeOf(l.footer.kind), footer: l.footer, json: l.json }
}

/** A lease over a layer the caller made itself (a full-fetched tar layer): released = closed. */
export function ownLease<L extends Layer>(layer: L): LayerLease<L> {
  let released = false
  return { layer, release: async () => { if (released) return; released = true; await layer.close() } }
}

