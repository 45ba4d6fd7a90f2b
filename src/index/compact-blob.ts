/**
 * A blob opened for the mount path: footer + verified TOC digest + CompactIndex, and nothing
 * else of the TOC (no JSON string, no entry objects). Either built from the registry's bytes by
 * the streaming build (toc-build.ts), or re-opened from the persisted index store without
 * reading the blob at all (index-store.ts), and then shared with every layer of that TOC digest.
 */
import type { IndexedBlob } from '../estargz/reader.js'
import type { MetadataBudget } from '../estargz/metadata-budget.js'
import type { LoadTocOptions } from '../estargz/toc-read.js'
import type { Footer, RangeSource } from '../estargz/types.js'
import type { CompactIndex } from './compact-index.js'
import type { IndexStore } from './index-store.js'
import { loadCompactToc, type TocBuilder } from './toc-build.js'

export interface CompactBlobOptions extends LoadTocOptions {
  allowUnverified?: boolean
  budget?: MetadataBudget
  /** Per-layer bound on the index's bytes. */
  maxIndexBytes?: number
  /** Names the layer in errors. */
  what?: string
  /** Re-open from here when the TOC digest is known; put the built index here. */
  store?: IndexStore
  /** Build the index off the main thread (toc-build-pool.ts); default inline. */
  builder?: TocBuilder
  /** Kept with the persisted index (e.g. layer digest, media type). */
  extra?: Record<string, unknown>
}

export class CompactBlob implements IndexedBlob {
  private released = false
  private constructor(
    readonly source: RangeSource,
    readonly footer: Footer,
    readonly tocDigest: string,
    readonly index: CompactIndex,
    readonly allowUnverified: boolean,
    /** Where the index came from: 'store' (no TOC fetched) or 'registry'. */
    readonly from: 'store' | 'registry',
    readonly tocBytesFetched: number,
    private readonly onRelease: () => void,
    /** Where the index was built: a TOC build worker, inline, or not at all (from the store). */
    readonly builtBy: 'worker' | 'inline' | 'none' = 'none',
  ) {}

  static async open(source: RangeSource, opts: CompactBlobOptions = {}): Promise<CompactBlob> {
    const allow = opts.allowUnverified ?? false
    const store = opts.store
    if (store !== undefined && opts.tocDigest !== undefined) {
      const hit = await store.get(opts.tocDigest)
      if (hit !== undefined) {
        if (hit.meta.blobSize === source.size) return new CompactBlob(source, hit.meta.footer, opts.tocDigest, hit.index, allow, 'store', 0, () => hit.release())
        hit.release()
      }
    }
    const built = await loadCompactToc(source, {
      ...opts,
      ...(opts.what === undefined ? {} : { what: opts.what }),
    })
    if (store === undefined) return new CompactBlob(source, built.footer, built.tocDigest, built.index, allow, 'registry', built.tocBytesFetched, () => built.index.close(), built.builtBy)
    const meta = { tocDigest: built.tocDigest, footer: built.footer, blobSize: source.size, ...(opts.extra === undefined ? {} : { extra: opts.extra }) }
    const lease = store.put(built.tocDigest, built.index, meta)
    return new CompactBlob(source, built.footer, built.tocDigest, lease.index, allow, 'registry', built.tocBytesFetched, () => lease.release(), built.builtBy)
  }

  release(): void {
    if (this.released) return
    this.released = true
    this.onRelease()
  }
}
