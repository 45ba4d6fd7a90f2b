/**
 * THE place a chunk cache is assembled (daemon, `stargz mount`, optimize, benchmarks): memory
 * LRU, plus a directory cache behind it when a directory is given. The result is owned by
 * whoever opened it (usually a LayerResolver, which closes it last).
 *
 * Hit/miss events come from here, where the tier that answered is known, not from the reader.
 */
import { LIBRARY_DEFAULTS } from '../config/defaults.js'
import { DirCache } from './dir-cache.js'
import { MemoryCache } from './memory-cache.js'
import { TieredCache } from './tiered-cache.js'
import type { CachePutOptions, CacheStats, ChunkCache } from './types.js'

export type CacheTier = 'memory' | 'disk'

export interface CacheObserver {
  cacheHit(tier: CacheTier): void
  cacheMiss(): void
}

export interface ChunkCacheOptions {
  /** Default LIBRARY_DEFAULTS.cache.memoryBytes (256 MiB). */
  memoryBytes?: number
  /** Bound of the directory cache. Default [cache] max_size_mb's. */
  diskBytes?: number
  /** Told of every lookup, with the tier that answered it. */
  observer?: CacheObserver
}

export const DEFAULT_MEMORY_CACHE_BYTES = LIBRARY_DEFAULTS.cache.memoryBytes
export const DEFAULT_DISK_CACHE_BYTES = LIBRARY_DEFAULTS.cache.diskBytes

export async function openChunkCache(cacheDir: string | undefined, opts: ChunkCacheOptions = {}): Promise<ChunkCache> {
  const mem = new MemoryCache({ maxBytes: opts.memoryBytes ?? DEFAULT_MEMORY_CACHE_BYTES })
  const cache = cacheDir === undefined ? mem : new TieredCache(mem, await DirCache.open({ root: cacheDir, maxBytes: opts.diskBytes ?? DEFAULT_DISK_CACHE_BYTES }))
  return opts.observer === undefined ? cache : new ObservedCache(cache, opts.observer)
}

/**
 * Reports each lookup. A synchronous `peek` hit is always memory; an asynchronous `get` is asked
 * of memory first, so a hit there is memory and a hit behind it is disk.
 */
export class ObservedCache implements ChunkCache {
  private readonly tiered: TieredCache | undefined

  constructor(private readonly inner: ChunkCache, private readonly observer: CacheObserver) {
    this.tiered = inner instanceof TieredCache ? inner : undefined
  }

  peek(key: string): Buffer | undefined {
    const b = this.inner.peek?.(key)
    if (b !== undefined) this.observer.cacheHit('memory')
    return b
  }

  has(key: string): boolean {
    return this.inner.has !== undefined ? this.inner.has(key) : this.inner.peek?.(key) !== undefined
  }

  touch(key: string): void {
    this.inner.touch?.(key)
  }

  async get(key: string): Promise<Buffer | undefined> {
    if (this.tiered !== undefined) {
      const m = this.tiered.peek(key)
      if (m !== undefined) { this.observer.cacheHit('memory'); return m }
    }
    const b = await this.inner.get(key)
    if (b === undefined) this.observer.cacheMiss()
    else this.observer.cacheHit(this.tiered === undefined ? 'memory' : 'disk')
    return b
  }

  put(key: string, data: Buffer, opts?: CachePutOptions): Promise<void> {
    return this.inner.put(key, data, opts)
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key)
  }

  stats(): CacheStats {
    return this.inner.stats()
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
