/**
 * A chunk cache holds the verified, uncompressed bytes of eStargz chunks keyed by their chunk
 * digest ("sha256:<hex>"). Keying by content (not by layer + offset) lets layers and images that
 * share a chunk share its cache entry, and lets the directory cache re-verify what it reads back.
 *
 * Buffers handed out by `get`/`peek` may be shared with the cache and with other readers: treat
 * them as read-only.
 */
export interface CachePutOptions {
  /**
   * The chunk comes from background work (prefetch-the-rest). Tiered caches keep it out of the
   * memory tier so a bulk fetch does not flush the chunks on-demand readers are using.
   */
  background?: boolean
}

export interface CacheStats {
  entries: number
  /** Bytes of chunk data held (file sizes for the directory cache). */
  bytes: number
  maxBytes: number
  hits: number
  misses: number
  evictions: number
  /** Entries found damaged on read-back and dropped (directory cache). */
  corrupt: number
}

/**
 * A big entry being written as a stream (chunks too big to hold in memory). Nothing is visible
 * until commit(), which the reader calls only after the streamed bytes verified.
 */
export interface CacheWriter {
  write(part: Buffer): Promise<void>
  commit(): Promise<void>
  /** Drop what was written. Safe after commit (no-op) and twice. */
  abort(): Promise<void>
}

export interface ChunkCache {
  get(key: string): Promise<Buffer | undefined>
  /** Synchronous lookup in memory only; undefined when the cache has no memory tier. */
  peek?(key: string): Buffer | undefined
  /** Whether the cache holds the key, answered from memory (no I/O); absent: unknown. */
  has?(key: string): boolean
  /** Mark a key as recently used without reading it (a tier in front served it). */
  touch?(key: string): void
  /** Store verified bytes. Resolves once stored (directory cache: once renamed into place). */
  put(key: string, data: Buffer, opts?: CachePutOptions): Promise<void>
  delete(key: string): Promise<void>
  /**
   * Bytes [offset, offset + length) of a big entry of `size` bytes, without loading it whole;
   * undefined when absent or not `size` bytes long. Only caches that store on disk have it.
   */
  readRange?(key: string, size: number, offset: number, length: number): Promise<Buffer | undefined>
  /** Start writing a big entry; undefined when it cannot be stored (larger than the cache). */
  createWriter?(key: string, size: number): Promise<CacheWriter | undefined>
  stats(): CacheStats
  /** Waits for pending writes; safe to call twice. */
  close(): Promise<void>
}

export const DIGEST_RE = /^sha256:([0-9a-f]{64})$/

export function emptyStats(maxBytes: number): CacheStats {
  return { entries: 0, bytes: 0, maxBytes, hits: 0, misses: 0, evictions: 0, corrupt: 0 }
}
