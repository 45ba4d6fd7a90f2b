import { InvalidArgumentError } from '../errors.js'
import { emptyStats, type CacheStats, type ChunkCache } from './types.js'

export interface MemoryCacheOptions {
  /** Upper bound on the memory the cache retains (payload, the allocations holding it, and per-entry overhead). */
  maxBytes: number
}

/**
 * Chunks up to this size are copied into shared slabs instead of being kept as they came: a
 * decoder's output for a 50-byte file is often a view of a 16 KiB (or 1 MiB) allocation, and
 * keeping the view keeps all of it (100k tiny cached files cost gigabytes that way).
 */
const PACK_MAX = 4096
const SLAB_BYTES = 256 * 1024
/** Map entry, entry object and Buffer view, measured roughly with --expose-gc (~150-200 B). */
export const ENTRY_OVERHEAD = 192

interface Slab { buf: Buffer; used: number; live: number; liveBytes: number }

interface Entry {
  data: Buffer
  /** The slab holding `data`, for packed entries. */
  slab: Slab | undefined
  /** Bytes charged for this entry (packed entries: only the overhead; their slab is charged). */
  charge: number
}

/**
 * LRU bounded by what entries really retain. A Map keeps insertion order, so re-inserting on
 * every hit makes the first key the least recently used one: eviction is O(1) per entry.
 *
 * Accounting: a packed entry charges ENTRY_OVERHEAD and its slab is charged in full while any
 * entry lives in it; any other entry charges its allocation's size (a view wasting more than an
 * eighth of its allocation is copied out first) plus ENTRY_OVERHEAD. Hot entries in slabs that
 * are mostly dead are moved to the current slab when hit, so holes do not pin slabs forever.
 */
export class MemoryCache implements ChunkCache {
  private readonly map = new Map<string, Entry>()
  private readonly counters: CacheStats
  private slab: Slab | undefined
  /** Slab size: at most an eighth of the bound, so one slab never crowds out the entries. */
  private readonly slabBytes: number

  constructor(opts: MemoryCacheOptions) {
    if (!Number.isFinite(opts.maxBytes) || opts.maxBytes < 0) throw new InvalidArgumentError(`memory cache maxBytes must be a non-negative number, got ${opts.maxBytes}`)
    this.counters = emptyStats(opts.maxBytes)
    this.slabBytes = Math.min(SLAB_BYTES, Math.floor(opts.maxBytes / 8))
  }

  peek(key: string): Buffer | undefined {
    const e = this.map.get(key)
    if (e === undefined) { this.counters.misses++; return undefined }
    this.map.delete(key)
    this.map.set(key, e)
    this.counters.hits++
    if (e.slab !== undefined && e.slab !== this.slab && e.slab.liveBytes * 4 < e.slab.buf.length) {
      // Compact: a hot entry should not keep a mostly dead slab alive.
      const data = e.data
      this.release(e)
      const moved = this.pack(data)
      this.map.set(key, moved)
      this.counters.bytes += moved.charge
      this.evict()
      return moved.data
    }
    return e.data
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
      this.release(old)
    }
    // An entry bigger than the whole cache would only evict everything else and then itself.
    if (data.length + ENTRY_OVERHEAD > this.counters.maxBytes) return
    const e = data.length <= PACK_MAX && data.length * 2 <= this.slabBytes ? this.pack(data) : this.own(data)
    this.map.set(key, e)
    this.counters.bytes += e.charge
    this.evict()
  }

  private pack(data: Buffer): Entry {
    const need = (data.length + 7) & ~7
    let s = this.slab
    if (s === undefined || s.used + need > s.buf.length) {
      s = { buf: Buffer.allocUnsafeSlow(this.slabBytes), used: 0, live: 0, liveBytes: 0 }
      this.slab = s
      this.counters.bytes += s.buf.length
    }
    const view = s.buf.subarray(s.used, s.used + data.length)
    data.copy(view)
    s.used += need
    s.live++
    s.liveBytes += need
    return { data: view, slab: s, charge: ENTRY_OVERHEAD }
  }

  private own(data: Buffer): Entry {
    const backing = data.buffer.byteLength
    if (backing - data.length > Math.max(data.length <= PACK_MAX ? 0 : 4096, data.length >> 3)) {
      const copy = Buffer.allocUnsafeSlow(data.length)
      data.copy(copy)
      return { data: copy, slab: undefined, charge: copy.length + ENTRY_OVERHEAD }
    }
    return { data, slab: undefined, charge: backing + ENTRY_OVERHEAD }
  }

  /** Un-charge an entry already removed from the map. */
  private release(e: Entry): void {
    this.counters.bytes -= e.charge
    const s = e.slab
    if (s === undefined) return
    s.live--
    s.liveBytes -= (e.data.length + 7) & ~7
    if (s.live > 0) return
    // Nothing lives in it any more: free it (the current slab too; the next put starts another).
    this.counters.bytes -= s.buf.length
    if (s === this.slab) this.slab = undefined
  }

  has(key: string): boolean {
    return this.map.has(key)
  }

  async delete(key: string): Promise<void> {
    const old = this.map.get(key)
    if (old === undefined) return
    this.map.delete(key)
    this.release(old)
  }

  private evict(): void {
    while (this.counters.bytes > this.counters.maxBytes) {
      const oldest = this.map.keys().next()
      if (oldest.done) break
      const e = this.map.get(oldest.value) as Entry
      this.map.delete(oldest.value)
      this.release(e)
      this.counters.evictions++
    }
  }

  stats(): CacheStats {
    return { ...this.counters, entries: this.map.size }
  }

  async close(): Promise<void> {
    this.map.clear()
    this.slab = undefined
    this.counters.bytes = 0
  }
}
