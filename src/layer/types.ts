import type { LayerIndex } from '../estargz/toc-index.js'
import type { LayerTree } from '../fuse/inode-table.js'
import type { TocEntry } from '../estargz/types.js'

/** What the reference exposes in /.stargz-snapshotter/<digest>.json inside a layer mount. */
export interface LayerState {
  digest: string
  size: number
  fetchedSize: number
  fetchedPercent: number
}

/**
 * A resolved eStargz layer, ready to serve file reads: TOC index + a reader that fetches,
 * inflates, verifies and caches chunks. The FUSE adapter (src/fuse) depends only on this.
 */
export interface Layer {
  /** Compressed layer digest ("sha256:..."). */
  readonly digest: string
  readonly tocDigest: string
  readonly index: LayerIndex
  /** Set when the index is itself the FUSE tree (CompactIndex): mounts serve it without a copy. */
  readonly tree?: LayerTree | undefined
  /**
   * Read [offset, offset+length) of the regular file `name` (TOC name; hardlinks resolved by the
   * layer), clamped to the file size. Rejects with a StargzError on fetch or verify failure.
   */
  read(name: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer>
  state(): LayerState
  /**
   * Called by the filesystem on every open of a regular file. The layer (and only the layer)
   * de-duplicates: its first-access listeners hear of each file once (for `stargz optimize`).
   */
  noteAccess?(entry: TocEntry): void
  /** Hear of each file's first access; returns the unsubscribe. */
  onFirstAccess?(listener: (entry: TocEntry) => void): () => void
  /**
   * Start prefetch and background fetch. Called once, by mountLayer, when the layer is mounted;
   * layers without background work have none.
   */
  start?(): void
  /** Drop this holder's reference; resources go when the last one is released. */
  close(): Promise<void>
}

/** One holder's reference to a layer owned by someone else (the LayerResolver). */
export interface LayerLease<L extends Layer = Layer> {
  readonly layer: L
  /** Drop the reference (safe to call twice); `evict` drops the layer now if nobody else holds it. */
  release(opts?: { evict?: boolean }): Promise<void>
}
