import { InvalidArgumentError } from '../errors.js'
import { emptyStats, type CacheStats, type ChunkCache } from './types.js'

export interface MemoryCacheOptions {
  /** Upper bound on the bytes of chunk data held. */
  maxBytes: number
}

/**
 * LRU bounded in bytes. A Map keeps insertion order, so re-inserting on every hit makes the
 * first key the least recently used one: eviction is O(1) per entry without a linked list.
 */
export class MemoryCache implements ChunkCache {
  private readonly map = new Map<string, Buffer>()
  private readonly counters: CacheStats

  constructor(opts: MemoryCacheOptions) {
    if (!Number.isFinite(opts.maxBytes) || opts.maxBytes < 0) throw new InvalidArgumentError(`memory cache maxBytes must be a non-negative number, got ${opts.maxBytes}`)
    this.counters = emptyStats(opts.maxBytes)
  }

  peek(key: string): Buffer | undefined {
    const b = this.map.get(key)
    if (b === undefined) { this.counters.misses++; return undefined }
    this.map.delete(key)
    this.map.set(key, b)
    this.counters.hits++
    return b
  }

  async get(key: string): Promise<Buffer | undefined> {
    return this.peek(key)
  }

  /** Synchronous body: the entry is visible to `peek` as soon as this is called. */
  put(key: string, data: Buffer): Promise<void> {
    this.putSync(key, data)
    return Promise.resolve()
  }

  putSync(key: string, data: Buffer): void {
    const old = this.map.get(key)
    if (old !== undefined) {
      this.map.delete(key)
      this.counters.bytes -= old.length
    }
    // An entry bigger than the whole cache would only evict everything else and then itself.
    if (data.length > this.counters.maxBytes) return
    this.map.set(key, data)
    this.counters.bytes += data.length
    this.evict()
  }

  has(key: string): boolean {
    return this.map.has(key)
  }

  async delete(key: string): Promise<void> {
    const old = this.map.get(key)
    if (old === undefined) return
    this.map.delete(key)
    this.counters.bytes -= old.length
  }

  private evict(): void {
    while (this.counters.bytes > this.counters.maxBytes) {
      const oldest = this.map.keys().next()
      if (oldest.done) break
      const b = this.map.get(oldest.value) as Buffer
      this.map.delete(oldest.value)
      this.counters.bytes -= b.length
      this.counters.evictions++
    }
  }

  stats(): CacheStats {
    return { ...this.counters, entries: this.map.size }
  }

  async close(): Promise<void> {
    this.map.clear()
    this.counters.bytes = 0
  }
}
