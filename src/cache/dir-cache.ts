/**
 * Content-addressed directory cache, shared by every layer (and every process) that points at
 * the same root.
 *
 * On-disk layout:
 *   <root>/<hex[0..2]>/<hex> ... the chunk's uncompressed bytes, where "sha256:<hex>" is its digest
 *   <root>/tmp/<hex>.<pid>.<random> ... a write in progress; renamed into place when complete
 *
 * A file in a shard is complete or absent: writers write a private temp file and rename(2) it
 * over the final name, so two writers of the same key (threads or processes) both succeed and
 * readers see one whole copy. We do not fsync: a file left truncated or zeroed by a crash is
 * caught on read-back, because every read re-hashes the bytes against the key (the reference
 * does not re-verify); a mismatch deletes the file and counts as a miss.
 *
 * Size bound: an in-memory index (key → size, in LRU order) is rebuilt at open by scanning the
 * shards, ordered by each file's max(atime, mtime). Hits bump the entry in memory and, at most
 * once a minute per entry, touch the file so the order survives restarts. When the total passes
 * maxBytes the least recently used files are unlinked. Several processes sharing a root each
 * bound what they know about; a file another process deleted is simply a miss.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidArgumentError } from '../errors.js'
import { slicedSha256, type Hasher } from './hash.js'
import { DIGEST_RE, emptyStats, type CacheStats, type ChunkCache } from './types.js'

export interface DirCacheOptions {
  root: string
  maxBytes: number
  /** Defaults to slicedSha256 (main thread, in slices). */
  hasher?: Hasher
  /** Temp files older than this are leftovers of a crashed writer and removed at open. */
  staleTempMs?: number
  /** Called when a damaged file is found and dropped (for logs/metrics). */
  onCorrupt?: (info: { key: string; path: string; actual: string }) => void
  now?: () => number
}

interface IndexEntry { size: number; touchedAt: number }

const TOUCH_EVERY_MS = 60_000

function isEnoent(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT'
}

export class DirCache implements ChunkCache {
  private readonly index = new Map<string, IndexEntry>()
  private readonly writes = new Map<string, { data: Buffer; done: Promise<void> }>()
  /** Bytes of writes in flight (temp files on disk, not yet in the index): counted against maxBytes. */
  private reserved = 0
  private readonly counters: CacheStats
  private readonly hasher: Hasher
  private readonly now: () => number
  private closed = false

  private constructor(readonly root: string, private readonly opts: DirCacheOptions) {
    this.counters = emptyStats(opts.maxBytes)
    this.hasher = opts.hasher ?? slicedSha256
    this.now = opts.now ?? Date.now
  }

  /** Create the root if needed, rebuild the index from what is on disk, enforce the bound. */
  static async open(opts: DirCacheOptions): Promise<DirCache> {
    if (!Number.isFinite(opts.maxBytes) || opts.maxBytes < 0) throw new InvalidArgumentError(`directory cache maxBytes must be a non-negative number, got ${opts.maxBytes}`)
    const c = new DirCache(opts.root, opts)
    await mkdir(join(opts.root, 'tmp'), { recursive: true })
    await c.scan()
    await c.evict()
    return c
  }

  private async scan(): Promise<void> {
    const found: Array<{ hex: string; size: number; at: number }> = []
    for (const shard of await readdir(this.root)) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue
      let names: string[]
      try { names = await readdir(join(this.root, shard)) } catch { continue }
      for (const hex of names) {
        if (!/^[0-9a-f]{64}$/.test(hex) || hex.slice(0, 2) !== shard) continue
        try {
          const st = await stat(join(this.root, shard, hex))
          if (st.isFile()) found.push({ hex, size: st.size, at: Math.max(st.atimeMs, st.mtimeMs) })
        } catch (e) { if (!isEnoent(e)) throw e }
      }
    }
    found.sort((a, b) => a.at - b.at)
    for (const f of found) this.addIndex(f.hex, f.size, f.at)
    const staleBefore = this.now() - (this.opts.staleTempMs ?? 10 * 60_000)
    for (const name of await readdir(join(this.root, 'tmp'))) {
      const p = join(this.root, 'tmp', name)
      try {
        if ((await stat(p)).mtimeMs < staleBefore) await rm(p, { force: true })
      } catch (e) { if (!isEnoent(e)) throw e }
    }
  }

  private hexOf(key: string): string {
    const m = DIGEST_RE.exec(key)
    if (!m) throw new InvalidArgumentError(`directory cache key ${JSON.stringify(key)} is not a sha256 digest`)
    return m[1] as string
  }

  pathOf(key: string): string {
    const hex = this.hexOf(key)
    return join(this.root, hex.slice(0, 2), hex)
  }

  private addIndex(hex: string, size: number, touchedAt: number): void {
    const old = this.index.get(hex)
    if (old) { this.index.delete(hex); this.counters.bytes -= old.size }
    this.index.set(hex, { size, touchedAt })
    this.counters.bytes += size
  }

  private dropIndex(hex: string): void {
    const old = this.index.get(hex)
    if (!old) return
    this.index.delete(hex)
    this.counters.bytes -= old.size
  }

  /** Bump a key in the LRU order (memory tier hits); the file time follows on a later read. */
  touch(key: string): void {
    const hex = this.hexOf(key)
    const e = this.index.get(hex)
    if (!e) return
    this.index.delete(hex)
    this.index.set(hex, e)
  }

  async get(key: string): Promise<Buffer | undefined> {
    const hex = this.hexOf(key)
    const pending = this.writes.get(hex)
    if (pending) { this.counters.hits++; return pending.data }
    const path = join(this.root, hex.slice(0, 2), hex)
    let data: Buffer
    try {
      data = await readFile(path)
    } catch (e) {
      if (!isEnoent(e)) throw e
      // Gone (evicted by another process, or never here).
      this.dropIndex(hex)
      this.counters.misses++
      return undefined
    }
    const actual = await this.hasher(data)
    if (actual !== key) {
      this.counters.corrupt++
      this.counters.misses++
      this.dropIndex(hex)
      // Only remove the damaged copy if it is still the file we read (a writer may have just
      // renamed a good copy over it); a good copy is never deleted here, worst case a bad one lingers.
      await this.unlinkIfSame(path, data.length, actual)
      this.opts.onCorrupt?.({ key, path, actual })
      return undefined
    }
    const now = this.now()
    const entry = this.index.get(hex)
    if (!entry || now - entry.touchedAt > TOUCH_EVERY_MS) {
      // Keep the on-disk LRU order for the next start; failures only cost ordering quality.
      const t = new Date(now)
      utimes(path, t, t).catch(() => undefined)
    }
    this.addIndex(hex, data.length, entry && now - entry.touchedAt <= TOUCH_EVERY_MS ? entry.touchedAt : now)
    this.counters.hits++
    await this.evict()
    return data
  }

  private async unlinkIfSame(path: string, size: number, actual: string): Promise<void> {
    try {
      const again = await readFile(path)
      if (again.length === size && (await this.hasher(again)) === actual) await unlink(path)
    } catch (e) { if (!isEnoent(e)) throw e }
  }

  put(key: string, data: Buffer): Promise<void> {
    const hex = this.hexOf(key)
    if (this.closed) return Promise.resolve()
    const pending = this.writes.get(hex)
    if (pending) return pending.done
    if (this.index.has(hex)) return Promise.resolve()
    if (data.length > this.counters.maxBytes) return Promise.resolve()
    // Writes in flight already fill the cap: skip this one rather than pass it (a cache may drop).
    if (this.reserved + data.length > this.counters.maxBytes) return Promise.resolve()
    const done = this.write(hex, data).finally(() => this.writes.delete(hex))
    this.writes.set(hex, { data, done })
    return done
  }

  private async write(hex: string, data: Buffer): Promise<void> {
    const dir = join(this.root, hex.slice(0, 2))
    const tmp = join(this.root, 'tmp', `${hex}.${process.pid}.${randomBytes(6).toString('hex')}`)
    // Room is made before the bytes land, not after: with many writes in flight (background
    // fetch) evicting afterwards let the directory pass maxBytes by their sum (issue #17 soak).
    this.reserved += data.length
    try {
      await this.evict()
      await mkdir(dir, { recursive: true })
      await writeFile(tmp, data, { flag: 'wx' })
      await rename(tmp, join(dir, hex))
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined)
      throw e
    } finally {
      this.reserved -= data.length
    }
    this.addIndex(hex, data.length, this.now())
    await this.evict()
  }

  async delete(key: string): Promise<void> {
    const hex = this.hexOf(key)
    this.dropIndex(hex)
    await rm(join(this.root, hex.slice(0, 2), hex), { force: true })
  }

  private async evict(): Promise<void> {
    while (this.counters.bytes + this.reserved > this.counters.maxBytes) {
      const oldest = this.index.keys().next()
      if (oldest.done) break
      const hex = oldest.value
      const size = this.index.get(hex)?.size ?? 0
      this.dropIndex(hex)
      this.counters.evictions++
      // Still on disk until the unlink completes: keep it counted, or a concurrent write sees room.
      this.reserved += size
      try {
        await rm(join(this.root, hex.slice(0, 2), hex), { force: true })
      } finally {
        this.reserved -= size
      }
    }
  }

  has(key: string): boolean {
    const hex = this.hexOf(key)
    return this.index.has(hex) || this.writes.has(hex)
  }

  stats(): CacheStats {
    return { ...this.counters, entries: this.index.size }
  }

  async close(): Promise<void> {
    this.closed = true
    await Promise.allSettled([...this.writes.values()].map((w) => w.done))
  }
}
