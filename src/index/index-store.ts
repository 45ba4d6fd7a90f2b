/**
 * Persisted compact indexes, keyed by TOC digest, under the daemon root (or a `stargz mount`
 * state dir): `<dir>/<hex>.sgzidx` (the CompactIndex file: its own sha256 trailer) and
 * `<dir>/<hex>.json` (what the layer needs besides the index: footer, blob size, …, and the
 * index file's trailer digest, so the pair is checked together).
 *
 *   const store = new IndexStore(join(root, 'index'), { budget })
 *   const hit = await store.get(tocDigest)          // memory, else disk (digest-checked), else undefined
 *   const lease = hit ?? await store.put(tocDigest, index, meta)   // after the TOC was verified
 *   … lease.index …
 *   lease.release()                                  // the last release closes the shared index
 *
 * Layers with the same TOC digest (the same layer in several images, or a layer re-resolved
 * after its TTL) share ONE CompactIndex in memory and one file on disk. A damaged or unreadable
 * pair is removed and reported as a miss, so the caller rebuilds it from the registry; a file is
 * never trusted without its digest check. Files are written with temp file + rename (0600).
 */
import { readFile, mkdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Footer } from '../estargz/types.js'
import { openIndexFile, writeIndexFile, type CompactIndex, type IndexBudget } from './compact-index.js'

export interface IndexMeta {
  tocDigest: string
  footer: Footer
  /** Compressed blob size: a record for another blob size is not this layer's. */
  blobSize: number
  /** Anything else the caller keeps with it (layer digest, media type, …): JSON values. */
  extra?: Record<string, unknown>
}

export interface StoredIndex {
  readonly index: CompactIndex
  readonly meta: IndexMeta
  /** Drop this holder's reference (safe to call twice). */
  release(): void
}

export interface IndexStoreOptions {
  /** Daemon-wide budget the re-opened indexes are accounted in. */
  budget?: IndexBudget
  /** Per-layer bound on an index's bytes. */
  maxBytes?: number
  /** Told about removed damaged files and failed writes. */
  onProblem?: (what: string, err: unknown) => void
}

interface Shared { index: CompactIndex; meta: IndexMeta; refs: number }

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/

function hexOf(tocDigest: string): string {
  const m = DIGEST_RE.exec(tocDigest)
  if (!m) throw new RangeError(`not a sha256 TOC digest: ${JSON.stringify(tocDigest)}`)
  return m[1] as string
}

function trailerHex(index: CompactIndex): string {
  const b = index.bytes()
  return b.subarray(b.length - 32).toString('hex')
}

export class IndexStore {
  private readonly shared = new Map<string, Shared>()
  private readonly opening = new Map<string, Promise<Shared | undefined>>()
  private readonly writes = new Set<Promise<void>>()
  private made: Promise<unknown> | undefined

  constructor(readonly dir: string, private readonly o: IndexStoreOptions = {}) {}

  /** Files of one TOC digest. */
  paths(tocDigest: string): { index: string; meta: string } {
    const hex = hexOf(tocDigest)
    return { index: join(this.dir, `${hex}.sgzidx`), meta: join(this.dir, `${hex}.json`) }
  }

  /** The index of a TOC digest: the shared one in memory, else re-opened from disk, else undefined. */
  async get(tocDigest: string): Promise<StoredIndex | undefined> {
    const mem = this.shared.get(tocDigest)
    if (mem) return this.lease(tocDigest, mem)
    let p = this.opening.get(tocDigest)
    if (!p) {
      p = this.openFromDisk(tocDigest).finally(() => this.opening.delete(tocDigest))
      this.opening.set(tocDigest, p)
    }
    const got = await p
    if (!got) return undefined
    const now = this.shared.get(tocDigest) ?? got
    if (!this.shared.has(tocDigest)) this.shared.set(tocDigest, now)
    return this.lease(tocDigest, now)
  }

  /**
   * Share a freshly built (verified) index under its TOC digest and persist it. If another
   * holder already shares one, that one is returned and `index` is closed. The file is written
   * in the background (flush() waits for it); a failed write only costs a rebuild later.
   */
  put(tocDigest: string, index: CompactIndex, meta: IndexMeta): StoredIndex {
    hexOf(tocDigest)
    const mem = this.shared.get(tocDigest)
    if (mem) {
      if (mem.index !== index) index.close()
      return this.lease(tocDigest, mem)
    }
    const s: Shared = { index, meta: { ...meta, tocDigest }, refs: 0 }
    this.shared.set(tocDigest, s)
    const w = this.write(tocDigest, s).catch((e: unknown) => this.o.onProblem?.(`write of the index of ${tocDigest}`, e))
    this.writes.add(w)
    void w.finally(() => this.writes.delete(w))
    return this.lease(tocDigest, s)
  }

  /**
   * The blob size recorded with a TOC digest's index, read from memory or the small record file
   * without opening the index (which get() checks in full). Lets a restart open the blob with no
   * registry request; undefined when nothing is stored or the record does not parse.
   */
  async knownSize(tocDigest: string): Promise<number | undefined> {
    const mem = this.shared.get(tocDigest)
    if (mem) return mem.meta.blobSize
    try {
      const m = JSON.parse(await readFile(this.paths(tocDigest).meta, 'utf8')) as Partial<IndexMeta>
      return m.tocDigest === tocDigest && typeof m.blobSize === 'number' && Number.isSafeInteger(m.blobSize) && m.blobSize > 0 ? m.blobSize : undefined
    } catch {
      return undefined
    }
  }

  /** Wait for the index files being written. */
  async flush(): Promise<void> {
    while (this.writes.size > 0) await Promise.allSettled([...this.writes])
  }

  /** Indexes shared in memory now (tests, stats). */
  get inMemory(): number { return this.shared.size }

  private lease(tocDigest: string, s: Shared): StoredIndex {
    s.refs++
    let released = false
    return {
      index: s.index,
      meta: s.meta,
      release: () => {
        if (released) return
        released = true
        if (--s.refs > 0) return
        if (this.shared.get(tocDigest) === s) this.shared.delete(tocDigest)
        s.index.close()
      },
    }
  }

  private async write(tocDigest: string, s: Shared): Promise<void> {
    this.made ??= mkdir(this.dir, { recursive: true, mode: 0o700 })
    await this.made
    const p = this.paths(tocDigest)
    await writeIndexFile(p.index, s.index)
    const tmp = `${p.meta}.tmp-${process.pid}`
    await writeFile(tmp, JSON.stringify({ ...s.meta, indexSha256: trailerHex(s.index) }), { mode: 0o600 })
    await rename(tmp, p.meta)
  }

  private async openFromDisk(tocDigest: string): Promise<Shared | undefined> {
    const p = this.paths(tocDigest)
    let metaText: string
    try {
      metaText = await readFile(p.meta, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
    let index: CompactIndex | undefined
    try {
      const m = JSON.parse(metaText) as IndexMeta & { indexSha256?: unknown }
      if (m.tocDigest !== tocDigest || typeof m.blobSize !== 'number' || typeof m.footer !== 'object' || m.footer === null || typeof m.footer.tocOffset !== 'number') {
        throw new Error('index record does not describe this TOC digest')
      }
      const limits: Parameters<typeof openIndexFile>[1] = { what: `index of ${tocDigest}` }
      if (this.o.budget !== undefined) limits.budget = this.o.budget
      if (this.o.maxBytes !== undefined) limits.maxBytes = this.o.maxBytes
      index = await openIndexFile(p.index, limits)
      if (trailerHex(index) !== m.indexSha256) throw new Error('index file is not the one its record names')
      const meta: IndexMeta = { tocDigest, footer: m.footer, blobSize: m.blobSize }
      if (m.extra !== undefined) meta.extra = m.extra
      return { index, meta, refs: 0 }
    } catch (e) {
      index?.close()
      // Limits are not damage: keep the files, refuse this open.
      if ((e as { code?: string }).code === 'ERR_LIMIT_EXCEEDED') throw e
      this.o.onProblem?.(`index of ${tocDigest} is damaged; removed`, e)
      await Promise.all([rm(p.index, { force: true }), rm(p.meta, { force: true })])
      return undefined
    }
  }
}

