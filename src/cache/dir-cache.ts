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
 *
 * Permissions: directories 0700 and files 0600 (created so, and tightened at open for a root
 * made by an older version): a private image's 0600 files must not become readable to local
 * users through the cache.
 *
 * Big entries (chunks too big to hold in memory) are written as a stream (createWriter, renamed
 * into place only after the caller verified the stream) and read by range (readRange). Hashing
 * a whole big file on every range read would cost a full read per FUSE read, so a big file is
 * re-verified once per process (on its first range read; files this process wrote and verified
 * count as checked).
 */
import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, unlink, utimes, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidArgumentError } from '../errors.js'
import { slicedSha256, type Hasher } from './hash.js'
import { createHash } from 'node:crypto'
import { DIGEST_RE, emptyStats, type CacheStats, type CacheWriter, type ChunkCache } from './types.js'

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
/**
 * Writes in flight at once. Background fetch of a layer of many small files puts thousands of
 * chunks within a second; unbounded, that ran the process out of file descriptors (EMFILE, seen
 * with 100k files). Queued writes stay visible to get() through `writes`.
 */
const MAX_WRITES = 16
const DIR_MODE = 0o700
const FILE_MODE = 0o600

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: alive, someone else's.
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

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
  /** Big files checked (or written verified) by this process; see readRange. */
  private readonly checked = new Set<string>()
  private readonly checking = new Map<string, Promise<boolean>>()
  private writing = 0
  private readonly writeQueue: Array<() => void> = []
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
    await mkdir(join(opts.root, 'tmp'), { recursive: true, mode: DIR_MODE })
    await chmod(opts.root, DIR_MODE)
    await chmod(join(opts.root, 'tmp'), DIR_MODE)
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
      await chmod(join(this.root, shard), DIR_MODE).catch(() => undefined)
      for (const hex of names) {
        if (!/^[0-9a-f]{64}$/.test(hex) || hex.slice(0, 2) !== shard) continue
        try {
          const st = await stat(join(this.root, shard, hex))
          if (!st.isFile()) continue
          if ((st.mode & 0o077) !== 0) await chmod(join(this.root, shard, hex), FILE_MODE)
          found.push({ hex, size: st.size, at: Math.max(st.atimeMs, st.mtimeMs) })
        } catch (e) { if (!isEnoent(e)) throw e }
      }
    }
    found.sort((a, b) => a.at - b.at)
    for (const f of found) this.addIndex(f.hex, f.size, f.at)
    const staleBefore = this.now() - (this.opts.staleTempMs ?? 10 * 60_000)
    for (const name of await readdir(join(this.root, 'tmp'))) {
      const p = join(this.root, 'tmp', name)
      // A temp file of a writer that is gone (its pid is in the name) will never be renamed: removed
      // now, not after staleTempMs, or it sits uncounted beside a full cache (issue #17: after a
      // kill -9 of stargz-fused the directory went 0.7 MB over its cap).
      const pid = Number(/^[0-9a-f]{64}\.(\d+)\./.exec(name)?.[1] ?? NaN)
      const orphan = Number.isInteger(pid) && pid !== process.pid && !processAlive(pid)
      try {
        if (orphan || (await stat(p)).mtimeMs < staleBefore) await rm(p, { force: true })
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
    this.checked.delete(hex)
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
    if (this.writing >= MAX_WRITES) await new Promise<void>((r) => this.writeQueue.push(r))
    this.writing++
    try {
      await this.writeNow(hex, data)
    } finally {
      this.writing--
      this.writeQueue.shift()?.()
    }
  }

  private async writeNow(hex: string, data: Buffer): Promise<void> {
    const dir = join(this.root, hex.slice(0, 2))
    const tmp = join(this.root, 'tmp', `${hex}.${process.pid}.${randomBytes(6).toString('hex')}`)
    // Room is made before the bytes land, not after: with many writes in flight (background
    // fetch) evicting afterwards let the directory pass maxBytes by their sum (issue #17 soak).
    this.reserved += data.length
    try {
      await this.evict()
      await mkdir(dir, { recursive: true, mode: DIR_MODE })
      await writeFile(tmp, data, { flag: 'wx', mode: FILE_MODE })
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

  /**
   * A streamed write of `size` bytes. Room is reserved (and made, by eviction) before the temp
   * file exists, and the reservation is held until commit puts the entry in the index or abort
   * removes the file, so the directory never holds more than maxBytes, temp files included
   * (issue #17). A writer that does not fit beside the writes in flight is not created (the cache
   * may drop; the caller streams without it). Writing past `size` is refused.
   */
  async createWriter(key: string, size: number): Promise<CacheWriter | undefined> {
    const hex = this.hexOf(key)
    if (this.closed || size > this.counters.maxBytes) return undefined
    if (this.reserved + size > this.counters.maxBytes) return undefined
    this.reserved += size
    let held = true
    const release = (): void => { if (held) { held = false; this.reserved -= size } }
    const dir = join(this.root, hex.slice(0, 2))
    const tmp = join(this.root, 'tmp', `${hex}.${process.pid}.${randomBytes(6).toString('hex')}`)
    let fh: FileHandle
    try {
      await this.evict()
      await mkdir(dir, { recursive: true, mode: DIR_MODE })
      fh = await open(tmp, 'wx', FILE_MODE)
    } catch (e) {
      release()
      throw e
    }
    let written = 0
    let state: 'open' | 'committed' | 'aborted' = 'open'
    return {
      write: async (part) => {
        if (state !== 'open') throw new InvalidArgumentError(`cache writer for ${key} is ${state}`)
        if (written + part.length > size) throw new InvalidArgumentError(`cache writer for ${key} got more than the ${size} bytes it reserved`)
        let off = 0
        while (off < part.length) {
          const { bytesWritten } = await fh.write(part, off, part.length - off, written + off)
          off += bytesWritten
        }
        written += part.length
      },
      commit: async () => {
        if (state !== 'open') return
        try {
          await fh.close()
          if (written !== size) { state = 'aborted'; await rm(tmp, { force: true }); throw new InvalidArgumentError(`cache writer for ${key} got ${written} bytes, expected ${size}`) }
          await rename(tmp, join(dir, hex))
        } catch (e) {
          state = 'aborted'
          await rm(tmp, { force: true }).catch(() => undefined)
          release()
          throw e
        }
        state = 'committed'
        // Index and reservation swap in one step: the bytes stay counted throughout.
        this.addIndex(hex, size, this.now())
        release()
        this.checked.add(hex)
        await this.evict()
      },
      abort: async () => {
        if (state !== 'open') return
        state = 'aborted'
        try {
          await fh.close().catch(() => undefined)
          await rm(tmp, { force: true })
        } finally {
          release()
        }
      },
    }
  }

  async readRange(key: string, size: number, offset: number, length: number): Promise<Buffer | undefined> {
    const hex = this.hexOf(key)
    const path = join(this.root, hex.slice(0, 2), hex)
    if (!this.checked.has(hex)) {
      let p = this.checking.get(hex)
      if (p === undefined) {
        p = this.checkWhole(key, hex, path, size).finally(() => this.checking.delete(hex))
        this.checking.set(hex, p)
      }
      if (!(await p)) return undefined
    }
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (e) {
      if (!isEnoent(e)) throw e
      this.dropIndex(hex)
      return undefined
    }
    try {
      if ((await fh.stat()).size !== size) { this.checked.delete(hex); return undefined }
      // Zero-filled and checked to be filled: a short read is a miss, never a partial answer.
      const out = Buffer.alloc(length)
      let got = 0
      while (got < length) {
        const { bytesRead } = await fh.read(out, got, length - got, offset + got)
        if (bytesRead === 0) return undefined
        got += bytesRead
      }
      this.touch(key)
      this.counters.hits++
      return out
    } finally {
      await fh.close()
    }
  }

  /** Hash a whole (big) file once: true if it is `size` bytes hashing to its key. */
  private async checkWhole(key: string, hex: string, path: string, size: number): Promise<boolean> {
    let st
    try { st = await stat(path) } catch (e) { if (isEnoent(e)) { this.dropIndex(hex); this.counters.misses++; return false } throw e }
    if (st.size !== size) { this.counters.misses++; return false }
    const h = createHash('sha256')
    for await (const part of createReadStream(path, { highWaterMark: 1024 * 1024 })) h.update(part as Buffer)
    const actual = 'sha256:' + h.digest('hex')
    if (actual !== key) {
      this.counters.corrupt++
      this.counters.misses++
      this.dropIndex(hex)
      await rm(path, { force: true })
      this.opts.onCorrupt?.({ key, path, actual })
      return false
    }
    this.checked.add(hex)
    if (!this.index.has(hex)) this.addIndex(hex, size, this.now())
    return true
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
      this.checked.delete(hex)
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
