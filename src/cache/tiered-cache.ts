import type { MemoryCache } from './memory-cache.js'
import type { CachePutOptions, CacheStats, CacheWriter, ChunkCache } from './types.js'

/**
 * Memory in front of a slower (directory) cache. Reads that hit the back tier are promoted into
 * memory; writes go to both, except background writes, which go to the back tier only so a bulk
 * fetch does not push out what on-demand readers are using. `stats()` reports the back tier's
 * size and the combined hit/miss counts as seen by callers.
 */
export class TieredCache implements ChunkCache {
  private hits = 0
  private misses = 0

  constructor(readonly front: MemoryCache, readonly back: ChunkCache) {}

  /** Unknown (undefined) only when the back tier cannot say. */
  has(key: string): boolean {
    if (this.front.has(key)) return true
    return this.back.has?.(key) ?? true
  }

  peek(key: string): Buffer | undefined {
    const b = this.front.peek(key)
    if (b !== undefined) { this.hits++; this.back.touch?.(key) }
    return b
  }

  async get(key: string): Promise<Buffer | undefined> {
    const m = this.front.peek(key)
    if (m !== undefined) { this.hits++; this.back.touch?.(key); return m }
    const b = await this.back.get(key)
    if (b === undefined) { this.misses++; return undefined }
    this.hits++
    this.front.putSync(key, b)
    return b
  }

  /** The memory tier is filled synchronously, before the returned promise settles. */
  put(key: string, data: Buffer, opts?: CachePutOptions): Promise<void> {
    if (!opts?.background) this.front.putSync(key, data)
    return this.back.put(key, data, opts)
  }

  /** Big entries live in the back tier only (never held whole in memory). */
  readRange(key: string, size: number, offset: number, length: number): Promise<Buffer | undefined> {
    return this.back.readRange ? this.back.readRange(key, size, offset, length) : Promise.resolve(undefined)
  }

  createWriter(key: string, size: number): Promise<CacheWriter | undefined> {
    return this.back.createWriter ? this.back.createWriter(key, size) : Promise.resolve(undefined)
  }

  async delete(key: string): Promise<void> {
    await this.front.delete(key)
    await this.back.delete(key)
  }

  stats(): CacheStats {
    const b = this.back.stats()
    return { ...b, hits: this.hits, misses: this.misses }
  }

  async close(): Promise<void> {
    await this.back.close()
    await this.front.close()
  }
}
