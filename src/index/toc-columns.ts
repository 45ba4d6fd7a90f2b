/**
 * The streaming half of the compact index build: validated TOC entries go in one at a time
 * (TocEntryScanner → TocValidator → add()), and only columns stay: one name string per entry,
 * a few numbers in growable typed arrays, sparse maps for the rare fields (link targets, xattrs,
 * device numbers, legacy file digests) and per-payload columns with raw 32-byte digests. No TOC
 * entry object outlives its add() call.
 *
 * finish() resolves what the TOC only implies (chunk sizes, member ends, the digest-size rule)
 * and the columns then serve as CompactIndex.build's source, which makes entries on demand for
 * InodeTable.build. Semantics are TocIndex's (implied directories, the root, one hardlink hop,
 * a single-chunk legacy file's whole-file digest standing for its chunk); the property test in
 * test/index checks the result against the object path.
 */
import { digestTwoSizesError } from '../estargz/toc-digest-sizes.js'
import type { ChunkCodec } from '../estargz/toc-index.js'
import type { TocEntry, TocEntryType } from '../estargz/types.js'
import type { BuildSource, PayloadFields } from './compact-index.js'

const TYPES: readonly TocEntryType[] = ['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo']
const TYPE_CODE = new Map<TocEntryType, number>(TYPES.map((t, i) => [t, i]))
const SHA256_RE = /^sha256:([0-9a-f]{64})$/
const DIGEST_BYTES = 32

type Typed = Float64Array | Uint32Array | Uint8Array

/** A typed array that doubles when full. */
class Grow<T extends Typed> {
  a: T
  length = 0
  constructor(private readonly make: (n: number) => T, private readonly width = 1) { this.a = make(1024 * width) }
  /** Make room for one more element (of `width` slots) and return its index. */
  next(): number {
    if ((this.length + 1) * this.width > this.a.length) {
      const b = this.make(this.a.length * 2)
      b.set(this.a as never)
      this.a = b
    }
    return this.length++
  }
  /** Drop the spare capacity once the size is final. */
  trim(): void { this.a = this.a.slice(0, this.length * this.width) as T }
}

const f64 = (n: number): Float64Array => new Float64Array(n)
const u32 = (n: number): Uint32Array => new Uint32Array(n)
const u8 = (n: number): Uint8Array => new Uint8Array(n)

function parentOf(name: string): string {
  const i = name.lastIndexOf('/')
  return i < 0 ? '' : name.slice(0, i)
}

export class TocColumns implements BuildSource {
  private readonly names: string[] = []
  private readonly byName = new Map<string, number>()
  private readonly type = new Grow(u8)
  private readonly mode = new Grow(u32)
  private readonly uid = new Grow(u32)
  private readonly gid = new Grow(u32)
  private readonly size = new Grow(f64)
  /** Index into `modtimes` + 1 (0: none): TOCs repeat a handful of modtimes. */
  private readonly mtime = new Grow(u32)
  private readonly modtimes: string[] = []
  private readonly modtimeIds = new Map<string, number>()
  private readonly firstChunk = new Grow(u32)
  private readonly chunkCount = new Grow(u32)
  private readonly links = new Map<number, string>()
  /** Hardlink entries by slot until finish(): their linkName is cleaned by the validator's finish(). */
  private readonly hardlinkEntries: Array<[number, TocEntry]> = []
  private readonly xattrs = new Map<number, Record<string, string>>()
  private readonly devs = new Map<number, [number, number]>()
  private readonly fileDigests = new Map<number, string>()
  // Payloads in blob (= TOC) order.
  private readonly owner = new Grow(u32)
  private readonly chunkOff = new Grow(f64)
  private readonly compOff = new Grow(f64)
  private readonly digestKind = new Grow(u8)
  private readonly digests = new Grow(u8, DIGEST_BYTES)
  private chunkSizes: Float64Array | undefined
  private compEnds: Float64Array | undefined
  /** Entry index of the regular file whose chunks come next, or -1. */
  private current = -1
  private finished = false
  landmarkOffset: number | undefined
  noPrefetchLandmark = false

  /** `landmarks`: the names whose presence means "prefetch up to here" / "do not prefetch". */
  constructor(private readonly landmarks: { prefetch: string; noPrefetch: string }, readonly codec: ChunkCodec | undefined) {
    this.slot('', 'dir', 0o755)
  }

  get entryCount(): number { return this.names.length }
  get payloadCount(): number { return this.owner.length }

  /** A new entry slot (or, for a name only implied so far, the implied one), attributes reset. */
  private slot(name: string, type: TocEntryType, mode: number): number {
    let i = this.byName.get(name)
    if (i === undefined) {
      i = this.type.next()
      this.mode.next(); this.uid.next(); this.gid.next(); this.size.next(); this.mtime.next(); this.firstChunk.next(); this.chunkCount.next()
      this.names.push(name)
      this.byName.set(name, i)
      // As TocIndex: a landmark name counts even if only implied (then its offset is 0).
      if (name === this.landmarks.prefetch) this.landmarkOffset = 0
      if (name === this.landmarks.noPrefetch) this.noPrefetchLandmark = true
    }
    this.type.a[i] = TYPE_CODE.get(type) as number
    this.mode.a[i] = mode
    return i
  }

  /** The parent ensured last: siblings come in runs, so most entries need no lookup. */
  private lastDir: string | undefined

  private ensureDir(dir: string): void {
    if (dir === this.lastDir) return
    if (this.byName.has(dir)) { this.lastDir = dir; return }
    this.ensureDir(parentOf(dir))
    this.slot(dir, 'dir', 0o755)
  }

  private addPayload(owner: number, e: TocEntry, digest: string | undefined): void {
    const i = this.owner.next()
    this.chunkOff.next(); this.compOff.next(); this.digestKind.next(); this.digests.next()
    this.owner.a[i] = owner
    this.chunkOff.a[i] = e.chunkOffset ?? 0
    this.compOff.a[i] = e.offset ?? 0
    const m = digest === undefined ? null : SHA256_RE.exec(digest)
    if (m) {
      this.digestKind.a[i] = 1
      this.digests.a.set(Buffer.from(m[1] as string, 'hex'), i * DIGEST_BYTES)
    }
    this.chunkCount.a[owner] = (this.chunkCount.a[owner] as number) + 1
  }

  /** One validated entry, in TOC order (chunks included). */
  add(e: TocEntry): void {
    if (e.type === 'chunk') {
      if (this.current < 0) return // validated: cannot happen
      this.addPayload(this.current, e, e.chunkDigest)
      return
    }
    if (e.name !== '') this.ensureDir(parentOf(e.name))
    const i = this.slot(e.name, e.type, e.mode ?? 0)
    this.uid.a[i] = e.uid ?? 0
    this.gid.a[i] = e.gid ?? 0
    this.size.a[i] = e.size ?? 0
    let mt = 0
    if (e.modtime !== undefined) {
      let id = this.modtimeIds.get(e.modtime)
      if (id === undefined) { id = this.modtimes.length; this.modtimes.push(e.modtime); this.modtimeIds.set(e.modtime, id) }
      mt = id + 1
    }
    this.mtime.a[i] = mt
    if (e.linkName !== undefined) this.links.set(i, e.linkName)
    // The validator cleans a hardlink's target only in its finish() (the target may come later in
    // the TOC), on this same object: read it again in finish() ("./a" → "a", issue #10 names).
    if (e.type === 'hardlink') this.hardlinkEntries.push([i, e])
    if (e.xattrs !== undefined) this.xattrs.set(i, e.xattrs)
    if (e.devMajor !== undefined || e.devMinor !== undefined) this.devs.set(i, [e.devMajor ?? 0, e.devMinor ?? 0])
    if (e.digest !== undefined && e.type === 'reg') this.fileDigests.set(i, e.digest)
    this.current = -1
    if (e.type === 'reg' && (e.size ?? 0) > 0) {
      // A single-chunk file in a legacy TOC may lack chunkDigest: its whole-file digest covers it.
      const single = (e.chunkSize ?? 0) === 0 || e.chunkSize === e.size
      this.firstChunk.a[i] = this.owner.length
      this.addPayload(i, e, e.chunkDigest ?? (single ? e.digest : undefined))
      this.current = i
    }
    if (e.name === this.landmarks.prefetch) this.landmarkOffset = e.offset ?? 0
    if (e.name === this.landmarks.noPrefetch) this.noPrefetchLandmark = true
  }

  /**
   * Resolve chunk sizes (next chunk's offset, or the file size) and member ends (next payload,
   * or `tocOffset`), then check that one digest never stands for two sizes.
   */
  finish(tocOffset: number): this {
    for (const [i, e] of this.hardlinkEntries) if (e.linkName !== undefined) this.links.set(i, e.linkName)
    this.hardlinkEntries.length = 0
    const c = this.owner.length
    for (const g of [this.type, this.mode, this.uid, this.gid, this.size, this.mtime, this.firstChunk, this.chunkCount, this.owner, this.chunkOff, this.compOff, this.digestKind, this.digests] as Array<Grow<Typed>>) g.trim()
    const sizes = new Float64Array(c)
    const ends = new Float64Array(c)
    const owner = this.owner.a
    const off = this.chunkOff.a
    for (let i = 0; i < c; i++) {
      const o = owner[i] as number
      sizes[i] = i + 1 < c && owner[i + 1] === o ? (off[i + 1] as number) - (off[i] as number) : (this.size.a[o] as number) - (off[i] as number)
      ends[i] = i + 1 < c ? (this.compOff.a[i + 1] as number) : tocOffset
    }
    this.chunkSizes = sizes
    this.compEnds = ends
    this.finished = true
    const seen = new Map<string, number>()
    const dig = Buffer.from(this.digests.a.buffer, this.digests.a.byteOffset, this.digests.a.byteLength)
    for (let i = 0; i < c; i++) {
      if (this.digestKind.a[i] !== 1) continue
      const key = dig.toString('latin1', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES)
      const j = seen.get(key)
      if (j === undefined) { seen.set(key, i); continue }
      if (sizes[j] !== sizes[i]) {
        throw digestTwoSizesError(this.payloadFields(i), this.payloadFields(j))
      }
    }
    return this
  }

  // ------------------------------------------------------------------ BuildSource / TreeSource

  private entryOf(i: number): TocEntry {
    const type = TYPES[this.type.a[i] as number] as TocEntryType
    const e: TocEntry = { name: this.names[i] as string, type, mode: this.mode.a[i] as number }
    const uid = this.uid.a[i] as number
    const gid = this.gid.a[i] as number
    if (uid !== 0) e.uid = uid
    if (gid !== 0) e.gid = gid
    const size = this.size.a[i] as number
    if (size !== 0) e.size = size
    const mt = this.mtime.a[i] as number
    if (mt !== 0) e.modtime = this.modtimes[mt - 1] as string
    const link = this.links.get(i)
    if (link !== undefined) e.linkName = link
    const x = this.xattrs.get(i)
    if (x !== undefined) e.xattrs = x
    const dev = this.devs.get(i)
    if (dev !== undefined) { e.devMajor = dev[0]; e.devMinor = dev[1] }
    const d = this.fileDigests.get(i)
    if (d !== undefined) e.digest = d
    if ((this.chunkCount.a[i] as number) > 0) e.offset = this.compOff.a[this.firstChunk.a[i] as number] as number
    return e
  }

  /** Entries by name, made on demand (read-only, insertion = TOC order with implied dirs). */
  readonly entries: ReadonlyMap<string, TocEntry> = ((cols: TocColumns): ReadonlyMap<string, TocEntry> => {
    const iter = function* (): IterableIterator<[string, TocEntry]> {
      for (let i = 0; i < cols.names.length; i++) yield [cols.names[i] as string, cols.entryOf(i)]
    }
    const map = {
      get size() { return cols.names.length },
      get: (k: string) => { const i = cols.byName.get(k); return i === undefined ? undefined : cols.entryOf(i) },
      has: (k: string) => cols.byName.has(k),
      entries: iter,
      keys: function* () { yield* cols.names },
      values: function* () { for (const [, e] of iter()) yield e },
      forEach: (cb: (v: TocEntry, k: string, m: unknown) => void) => { for (const [k, v] of iter()) cb(v, k, map) },
      [Symbol.iterator]: iter,
    }
    return map as unknown as ReadonlyMap<string, TocEntry>
  })(this)

  resolve(name: string): TocEntry | undefined {
    const e = this.entries.get(name)
    if (e?.type === 'hardlink' && e.linkName !== undefined) return this.entries.get(e.linkName)
    return e
  }

  payloadFields(i: number, withDigest = true): PayloadFields {
    if (!this.finished) throw new Error('TocColumns: finish() first')
    const digest = withDigest && this.digestKind.a[i] === 1
      ? 'sha256:' + Buffer.from(this.digests.a.buffer, this.digests.a.byteOffset + i * DIGEST_BYTES, DIGEST_BYTES).toString('hex')
      : undefined
    return {
      name: this.names[this.owner.a[i] as number] as string,
      chunkOffset: this.chunkOff.a[i] as number,
      chunkSize: (this.chunkSizes as Float64Array)[i] as number,
      compressedOffset: this.compOff.a[i] as number,
      compressedEnd: (this.compEnds as Float64Array)[i] as number,
      digest,
    }
  }

  copyDigest(i: number, dst: Uint8Array, at: number): boolean {
    if (this.digestKind.a[i] !== 1) return false
    dst.set(this.digests.a.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES), at)
    return true
  }

  chunkRun(name: string): [number, number] | undefined {
    const i = this.byName.get(name)
    if (i === undefined) return undefined
    const n = this.chunkCount.a[i] as number
    return n === 0 ? undefined : [this.firstChunk.a[i] as number, n]
  }
}
