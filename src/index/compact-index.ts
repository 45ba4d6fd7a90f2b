/**
 * A compact, immutable index of one layer: everything the FUSE ops and the chunk mapping need,
 * packed into ONE buffer of struct-of-arrays sections, so it can be written to disk as one file
 * and used in place on re-open (typed-array views over the file's bytes: no parse, no per-entry
 * objects).
 *
 * It is built from the straightforward structures (TocIndex + InodeTable) and keeps their slot
 * numbering, so inode numbers, readdir order and chunk mapping are the same by construction; the
 * property test in test/index/ checks that.
 *
 * File layout (little endian, every section 8-byte aligned):
 *   header   magic "SGZIDX\0\0", u32 version, u32 flags, u32 counts (see HEADER_FIELDS)
 *   f64      sizes[n] mtimes[n] | chunkOff[c] chunkSize[c] compOff[c] compEnd[c]
 *   u32      pathStart[n+1] parents[n] primaries[n] modes[n] uids[n] gids[n] rdevs[n] nlinks[n]
 *            childStart[n+1] childList[n-1] fileChunk[n] fileChunkCount[n] chunkOwner[c]
 *            ownerStr[2o] linkSlot[l] linkStr[2l] xattrSlot[x] xattrSet[x] setStart[m+1]
 *            pairStr[4p]
 *   u8       flags[n] digestKind[c] digests[32c] strings[s]
 *   trailer  sha256 over every byte before it
 *
 * Strings (paths, link targets, chunk owners, xattr names and raw values) live in one UTF-8 blob;
 * paths are full TOC-relative paths in the InodeTable's sort order (UTF-16 code units), so a
 * lookup is a binary search decoding ~17 short strings. Symlink targets and xattrs are sparse
 * tables keyed by slot; identical xattr sets are stored once. Chunk digests are 32 raw bytes.
 */
import { createHash } from 'node:crypto'
import { readFile, writeFile, rename, rm } from 'node:fs/promises'
import { LimitError, TocError } from '../errors.js'
import type { ChunkCodec, ChunkRef, TocIndex } from '../estargz/toc-index.js'
import type { TocEntry } from '../estargz/types.js'
import { S_IFDIR, S_IFMT, S_IFREG } from '../fuse/attr.js'
import { FLAG_OPAQUE, FLAG_WHITEOUT, FLAG_XATTRS, InodeTable, type LayerTree } from '../fuse/inode-table.js'

export const INDEX_MAGIC = 'SGZIDX\0\0'
export const INDEX_VERSION = 1
const DIGEST_BYTES = 32
const HEADER_FIELDS = ['n', 'c', 'o', 'l', 'x', 'm', 'p', 's', 'maxIno', 'anyFlags'] as const
type Counts = Record<(typeof HEADER_FIELDS)[number], number>
const HEADER_BYTES = align8(8 + 4 + 4 + HEADER_FIELDS.length * 4)

/** Digest kinds per chunk: 0 none, raw sha256 in `digests`, or a non-sha256 string (offsets in it). */
const DIGEST_SHA256 = 1
const DIGEST_STRING = 2
const SHA256_RE = /^sha256:([0-9a-f]{64})$/

const CODECS: readonly ChunkCodec[] = ['gzip', 'zstd']

function align8(n: number): number { return (n + 7) & ~7 }

interface Layout {
  f64: Record<string, [number, number]>
  u32: Record<string, [number, number]>
  u8: Record<string, [number, number]>
  total: number
}

/** Section name → [byte offset, element count], fixed by the counts alone. */
function layout(k: Counts): Layout {
  let off = HEADER_BYTES
  const place = (sections: Array<[string, number]>, width: number): Record<string, [number, number]> => {
    const out: Record<string, [number, number]> = {}
    for (const [name, len] of sections) { out[name] = [off, len]; off = align8(off + len * width) }
    return out
  }
  const f64 = place([['sizes', k.n], ['mtimes', k.n], ['chunkOff', k.c], ['chunkSize', k.c], ['compOff', k.c], ['compEnd', k.c]], 8)
  const u32 = place([['pathStart', k.n + 1], ['parents', k.n], ['primaries', k.n], ['modes', k.n], ['uids', k.n], ['gids', k.n],
    ['rdevs', k.n], ['nlinks', k.n], ['childStart', k.n + 1], ['childList', Math.max(0, k.n - 1)], ['fileChunk', k.n],
    ['fileChunkCount', k.n], ['chunkOwner', k.c], ['ownerStr', 2 * k.o], ['linkSlot', k.l], ['linkStr', 2 * k.l],
    ['xattrSlot', k.x], ['xattrSet', k.x], ['setStart', k.m + 1], ['pairStr', 4 * k.p]], 4)
  const u8 = place([['flags', k.n], ['digestKind', k.c], ['digests', DIGEST_BYTES * k.c], ['strings', k.s]], 1)
  return { f64, u32, u8, total: off + DIGEST_BYTES }
}

/**
 * Where the index's bytes are accounted: structurally the daemon-wide MetadataBudget (bytepath's
 * src/estargz/metadata-budget.ts), so the same budget bounds TOCs and compact indexes.
 */
export interface IndexBudget {
  reserve(bytes: number, what: string): { release(): void }
}

export interface IndexLimits {
  /** Per-layer bound on the index's bytes (exact: the file size), else a LimitError. */
  maxBytes?: number
  /** Daemon-wide budget; the reservation is released by close(). */
  budget?: IndexBudget
  /** Names the layer in errors, e.g. its digest. */
  what?: string
}

function reserve(bytes: number, limits: IndexLimits): { release(): void } | undefined {
  const what = limits.what ?? 'layer index'
  if (limits.maxBytes !== undefined && bytes > limits.maxBytes) {
    throw new LimitError(`${what}: its index needs ${bytes} bytes, over the per-layer limit of ${limits.maxBytes}`)
  }
  return limits.budget?.reserve(bytes, what)
}

/** The file is not a usable index: wrong magic, version, size or digest. Callers rebuild it. */
export class IndexFileError extends TocError {
  constructor(message: string) { super('index-file', message) }
}

function sortedSearch(n: number, key: string, at: (i: number) => string): number {
  let lo = 0
  let hi = n - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const v = at(mid)
    if (v < key) lo = mid + 1
    else if (v > key) hi = mid - 1
    else return mid
  }
  return -1
}

function u32Search(a: Uint32Array, key: number): number {
  let lo = 0
  let hi = a.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const v = a[mid] as number
    if (v < key) lo = mid + 1
    else if (v > key) hi = mid - 1
    else return mid
  }
  return -1
}

export class CompactIndex implements LayerTree {
  readonly count: number
  readonly maxIno: number
  /** True if any slot has xattrs or is an opaque directory: getxattr must then be served. */
  readonly anyXattrs: boolean
  private readonly buf: Buffer
  private readonly str: Buffer
  private readonly sizes: Float64Array
  private readonly mtimes: Float64Array
  private readonly chunkOff: Float64Array
  private readonly chunkSize: Float64Array
  private readonly compOff: Float64Array
  private readonly compEnd: Float64Array
  private readonly pathStart: Uint32Array
  private readonly parents: Uint32Array
  private readonly primaries: Uint32Array
  private readonly modes: Uint32Array
  private readonly uids: Uint32Array
  private readonly gids: Uint32Array
  private readonly rdevs: Uint32Array
  private readonly nlinks: Uint32Array
  private readonly childStart: Uint32Array
  private readonly childList: Uint32Array
  private readonly fileChunk: Uint32Array
  private readonly fileChunkCount: Uint32Array
  private readonly chunkOwner: Uint32Array
  private readonly ownerStr: Uint32Array
  private readonly linkSlot: Uint32Array
  private readonly linkStr: Uint32Array
  private readonly xattrSlot: Uint32Array
  private readonly xattrSet: Uint32Array
  private readonly setStart: Uint32Array
  private readonly pairStr: Uint32Array
  private readonly flags: Uint8Array
  private readonly digestKind: Uint8Array
  private readonly digests: Uint8Array
  private reservation: { release(): void } | undefined
  private readonly byteOrdered: boolean
  private readonly codec: ChunkCodec | undefined

  private constructor(buf: Buffer, k: Counts) {
    this.buf = buf
    const flags = buf.readUInt32LE(12)
    this.byteOrdered = (flags & 1) === 1
    this.codec = CODECS[((flags >> 1) & 3) - 1]
    const L = layout(k)
    const ab = buf.buffer
    const base = buf.byteOffset
    const f = (name: string): Float64Array => { const [o, n] = L.f64[name] as [number, number]; return new Float64Array(ab, base + o, n) }
    const u = (name: string): Uint32Array => { const [o, n] = L.u32[name] as [number, number]; return new Uint32Array(ab, base + o, n) }
    const b = (name: string): Uint8Array => { const [o, n] = L.u8[name] as [number, number]; return new Uint8Array(ab, base + o, n) }
    this.sizes = f('sizes'); this.mtimes = f('mtimes')
    this.chunkOff = f('chunkOff'); this.chunkSize = f('chunkSize'); this.compOff = f('compOff'); this.compEnd = f('compEnd')
    this.pathStart = u('pathStart'); this.parents = u('parents'); this.primaries = u('primaries'); this.modes = u('modes')
    this.uids = u('uids'); this.gids = u('gids'); this.rdevs = u('rdevs'); this.nlinks = u('nlinks')
    this.childStart = u('childStart'); this.childList = u('childList'); this.fileChunk = u('fileChunk')
    this.fileChunkCount = u('fileChunkCount'); this.chunkOwner = u('chunkOwner'); this.ownerStr = u('ownerStr')
    this.linkSlot = u('linkSlot'); this.linkStr = u('linkStr'); this.xattrSlot = u('xattrSlot'); this.xattrSet = u('xattrSet')
    this.setStart = u('setStart'); this.pairStr = u('pairStr')
    this.flags = b('flags'); this.digestKind = b('digestKind'); this.digests = b('digests')
    const [so, sn] = L.u8.strings as [number, number]
    this.str = buf.subarray(so, so + sn)
    this.count = k.n
    this.maxIno = k.maxIno
    this.anyXattrs = k.anyFlags !== 0
  }

  // ---------------------------------------------------------------- building and the file format

  /** Pack a TocIndex (and the tree InodeTable.build makes of it) into one buffer. */
  static build(index: TocIndex, table: InodeTable = InodeTable.build(index), limits: IndexLimits = {}): CompactIndex {
    const n = table.count
    const strings: Buffer[] = []
    let strLen = 0
    const interned = new Map<string, [number, number]>()
    const addStr = (s: string | Buffer): [number, number] => {
      const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
      const r: [number, number] = [strLen, strLen + b.length]
      strings.push(b)
      strLen += b.length
      return r
    }
    const intern = (s: string): [number, number] => {
      let r = interned.get(s)
      if (r === undefined) { r = addStr(s); interned.set(s, r) }
      return r
    }

    const pathStart = new Uint32Array(n + 1)
    for (let s = 0; s < n; s++) { pathStart[s] = strLen; addStr(table.path(s)) }
    pathStart[n] = strLen
    // Paths are in UTF-16 order (InodeTable's). Where that is also their UTF-8 byte order (no
    // character >= U+E000 next to an astral one), lookups can compare bytes without decoding.
    const pathBlob = Buffer.concat(strings, strLen)
    let byteOrdered = 1
    for (let s = 1; s < n && byteOrdered === 1; s++) {
      if (pathBlob.compare(pathBlob, pathStart[s - 1], pathStart[s], pathStart[s], pathStart[s + 1]) <= 0) byteOrdered = 0
    }

    // Chunks in payload (blob) order; each file's chunks are a contiguous run of it.
    const payloads = index.payloads
    const c = payloads.length
    const refAt = new Map<ChunkRef, number>()
    for (let i = 0; i < c; i++) refAt.set(payloads[i] as ChunkRef, i)
    const chunkOwner = new Uint32Array(c)
    const owners: Array<[number, number]> = []
    const ownerOf = new Map<string, number>()
    const digestKind = new Uint8Array(c)
    const digests = new Uint8Array(DIGEST_BYTES * c)
    for (let i = 0; i < c; i++) {
      const r = payloads[i] as ChunkRef
      let o = ownerOf.get(r.name)
      if (o === undefined) { o = owners.length; owners.push(intern(r.name)); ownerOf.set(r.name, o) }
      chunkOwner[i] = o
      if (r.digest !== undefined) {
        const m = SHA256_RE.exec(r.digest)
        const dv = new DataView(digests.buffer, i * DIGEST_BYTES, DIGEST_BYTES)
        if (m) { digestKind[i] = DIGEST_SHA256; digests.set(Buffer.from(m[1] as string, 'hex'), i * DIGEST_BYTES) }
        else { const [a, e] = intern(r.digest); digestKind[i] = DIGEST_STRING; dv.setUint32(0, a, true); dv.setUint32(4, e, true) }
      }
    }
    const fileChunk = new Uint32Array(n)
    const fileChunkCount = new Uint32Array(n)
    const links: Array<[number, [number, number]]> = []
    const xattrs: Array<[number, number]> = []
    const sets: Array<Array<[[number, number], [number, number]]>> = []
    const setOf = new Map<string, number>()
    let pairs = 0
    for (let s = 0; s < n; s++) {
      if (table.primary(s) !== s || table.isWhiteout(s)) continue
      const e: TocEntry | undefined = index.entries.get(table.path(s))
      if (table.isRegular(s)) {
        const refs = index.chunks(table.path(s))
        if (refs.length > 0) {
          const first = refAt.get(refs[0] as ChunkRef) as number
          for (let j = 1; j < refs.length; j++) {
            if (refAt.get(refs[j] as ChunkRef) !== first + j) throw new TocError('index-chunks', 'chunks of a file are not contiguous in the TOC', table.path(s))
          }
          fileChunk[s] = first
          fileChunkCount[s] = refs.length
        }
      }
      if (e?.type === 'symlink') links.push([s, intern(e.linkName ?? '')])
      if (table.hasXattrs(s) && e?.xattrs !== undefined) {
        const keys = Object.keys(e.xattrs)
        const sig = JSON.stringify(keys.map((k) => [k, e.xattrs?.[k]]))
        let id = setOf.get(sig)
        if (id === undefined) {
          id = sets.length
          sets.push(keys.map((k) => [intern(k), addStr(Buffer.from(e.xattrs?.[k] ?? '', 'base64'))]))
          pairs += keys.length
          setOf.set(sig, id)
        }
        xattrs.push([s, id])
      }
    }

    let anyFlags = 0
    for (let s = 0; s < n; s++) if (table.hasXattrs(s) || table.isOpaque(s)) { anyFlags = 1; break }
    const k: Counts = { n, c, o: owners.length, l: links.length, x: xattrs.length, m: sets.length, p: pairs, s: strLen, maxIno: table.maxIno, anyFlags }
    const L = layout(k)
    const reservation = reserve(L.total, limits)
    let buf: Buffer
    try { buf = Buffer.alloc(L.total) } catch (e) { reservation?.release(); throw e }
    buf.write(INDEX_MAGIC, 0, 'latin1')
    buf.writeUInt32LE(INDEX_VERSION, 8)
    // flags: bit 0 byte-ordered paths; bits 1-2 the layer's chunk codec (0 none given, 1 gzip, 2 zstd).
    const codec = payloads[0]?.codec
    buf.writeUInt32LE(byteOrdered | ((codec === undefined ? 0 : CODECS.indexOf(codec) + 1) << 1), 12)
    HEADER_FIELDS.forEach((f, i) => buf.writeUInt32LE(k[f], 16 + 4 * i))
    const idx = new CompactIndex(buf, k)
    // Fill through the views of the new index (they alias `buf`).
    const w = idx as unknown as Record<string, Float64Array | Uint32Array | Uint8Array>
    const fill = (name: string, at: (i: number) => number): void => { const a = w[name] as Float64Array | Uint32Array | Uint8Array; for (let i = 0; i < a.length; i++) a[i] = at(i) }
    // Per-slot and per-chunk columns in plain typed loops (one closure per column was ~1 s at 100k).
    for (let s = 0; s < n; s++) {
      idx.sizes[s] = table.size(s); idx.mtimes[s] = table.mtimeMs(s)
      idx.parents[s] = table.parent(s); idx.primaries[s] = table.primary(s)
      // Attribute arrays are per primary; copying through the accessors of the primary is the same.
      idx.modes[s] = table.mode(s); idx.uids[s] = table.uid(s); idx.gids[s] = table.gid(s)
      idx.rdevs[s] = table.rdev(s); idx.nlinks[s] = table.nlink(s)
    }
    for (let i = 0; i < c; i++) {
      const r = payloads[i] as ChunkRef
      idx.chunkOff[i] = r.chunkOffset; idx.chunkSize[i] = r.chunkSize; idx.compOff[i] = r.compressedOffset; idx.compEnd[i] = r.compressedEnd
    }
    idx.pathStart.set(pathStart)
    let cs = 0
    for (let s = 0; s < n; s++) {
      idx.childStart[s] = cs
      if (!table.isDir(s)) continue
      const kids = table.children(s)
      idx.childList.set(kids, cs)
      cs += kids.length
    }
    idx.childStart[n] = cs
    idx.fileChunk.set(fileChunk); idx.fileChunkCount.set(fileChunkCount); idx.chunkOwner.set(chunkOwner)
    fill('ownerStr', (i) => (owners[i >> 1] as [number, number])[i & 1] as number)
    fill('linkSlot', (i) => (links[i] as [number, [number, number]])[0]); fill('linkStr', (i) => (links[i >> 1] as [number, [number, number]])[1][i & 1] as number)
    fill('xattrSlot', (i) => (xattrs[i] as [number, number])[0]); fill('xattrSet', (i) => (xattrs[i] as [number, number])[1])
    const setStart: number[] = [0]
    const pairStr: number[] = []
    for (const set of sets) { for (const [key, val] of set) pairStr.push(key[0], key[1], val[0], val[1]); setStart.push(pairStr.length / 4) }
    fill('setStart', (i) => setStart[i] as number); fill('pairStr', (i) => pairStr[i] as number)
    fill('flags', (s) => (table.isWhiteout(s) ? FLAG_WHITEOUT : 0) | (table.isOpaque(s) ? FLAG_OPAQUE : 0) | (table.hasXattrs(s) ? FLAG_XATTRS : 0))
    idx.digestKind.set(digestKind); idx.digests.set(digests)
    Buffer.concat(strings, strLen).copy(idx.str)
    createHash('sha256').update(buf.subarray(0, L.total - DIGEST_BYTES)).digest().copy(buf, L.total - DIGEST_BYTES)
    idx.reservation = reservation
    return idx
  }

  /** Use a serialised index in place. Refuses a wrong magic, version, length or digest. */
  static fromBuffer(input: Buffer, limits: IndexLimits = {}): CompactIndex {
    if (input.length < HEADER_BYTES + DIGEST_BYTES) throw new IndexFileError(`index file too short (${input.length} bytes)`)
    if (input.toString('latin1', 0, 8) !== INDEX_MAGIC) throw new IndexFileError('not an index file (bad magic)')
    const version = input.readUInt32LE(8)
    if (version !== INDEX_VERSION) throw new IndexFileError(`index file version ${version}, expected ${INDEX_VERSION}`)
    const k = Object.fromEntries(HEADER_FIELDS.map((f, i) => [f, input.readUInt32LE(16 + 4 * i)])) as Counts
    const L = layout(k)
    if (input.length !== L.total) throw new IndexFileError(`index file is ${input.length} bytes, its header says ${L.total}`)
    const want = input.subarray(L.total - DIGEST_BYTES)
    const got = createHash('sha256').update(input.subarray(0, L.total - DIGEST_BYTES)).digest()
    if (!got.equals(want)) throw new IndexFileError('index file digest mismatch')
    // Typed-array views need aligned offsets; a pooled or sliced Buffer may not be.
    const buf = input.byteOffset % 8 === 0 ? input : Buffer.from(input)
    const idx = new CompactIndex(buf, k)
    idx.reservation = reserve(L.total, limits)
    return idx
  }

  /** Release the budget reservation (the buffer goes with the last reference). Safe twice. */
  close(): void {
    this.reservation?.release()
    this.reservation = undefined
  }

  /** The serialised form (the index's own buffer: no copy). */
  bytes(): Buffer { return this.buf }

  /** Bytes this index holds (one buffer: everything). */
  byteLength(): number { return this.buf.length }

  // --------------------------------------------------------------- the InodeTable surface

  private str8(a: number, b: number): string { return this.str.toString('utf8', a, b) }

  path(s: number): string { return this.str8(this.pathStart[s] as number, this.pathStart[s + 1] as number) }
  baseName(s: number): string {
    const a = this.pathStart[s] as number
    const b = this.pathStart[s + 1] as number
    const slash = this.str.lastIndexOf(0x2f, b - 1)
    return this.str8(slash >= a ? slash + 1 : a, b)
  }
  lookup(path: string): number {
    if (!this.byteOrdered) return sortedSearch(this.count, path, (i) => this.path(i))
    const key = Buffer.from(path, 'utf8')
    let lo = 0
    let hi = this.count - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const c = this.str.compare(key, 0, key.length, this.pathStart[mid] as number, this.pathStart[mid + 1] as number)
      if (c < 0) lo = mid + 1
      else if (c > 0) hi = mid - 1
      else return mid
    }
    return -1
  }
  lookupFusePath(fusePath: string): number { return this.lookup(fusePath.length <= 1 ? '' : fusePath.slice(1)) }
  parent(s: number): number { return this.parents[s] as number }
  primary(s: number): number { return this.primaries[s] as number }
  ino(s: number): number { return (this.primaries[s] as number) + 1 }
  mode(s: number): number { return this.modes[s] as number }
  uid(s: number): number { return this.uids[s] as number }
  gid(s: number): number { return this.gids[s] as number }
  rdev(s: number): number { return this.rdevs[s] as number }
  nlink(s: number): number { return this.nlinks[s] as number }
  size(s: number): number { return this.sizes[s] as number }
  mtimeMs(s: number): number { return this.mtimes[s] as number }
  isDir(s: number): boolean { return ((this.modes[s] as number) & S_IFMT) === S_IFDIR }
  isRegular(s: number): boolean { return ((this.modes[s] as number) & S_IFMT) === S_IFREG }
  isWhiteout(s: number): boolean { return ((this.flags[s] as number) & FLAG_WHITEOUT) !== 0 }
  isOpaque(s: number): boolean { return ((this.flags[this.primary(s)] as number) & FLAG_OPAQUE) !== 0 }
  hasXattrs(s: number): boolean { return ((this.flags[this.primary(s)] as number) & FLAG_XATTRS) !== 0 }
  tocName(s: number): string { return this.path(this.primary(s)) }
  children(s: number): Uint32Array { return this.childList.subarray(this.childStart[s] as number, this.childStart[s + 1] as number) }
  arrayBytes(): number { return this.buf.length }

  // --------------------------------------------------------------- what the TOC entry served

  /** Symlink target of a slot, or undefined if it is not a symlink. */
  linkTarget(s: number): string | undefined {
    const i = u32Search(this.linkSlot, this.primary(s))
    return i < 0 ? undefined : this.str8(this.linkStr[2 * i] as number, this.linkStr[2 * i + 1] as number)
  }

  /** xattr names and raw values of a slot (the TOC's base64 decoded), in TOC order. */
  xattrs(s: number): Array<[string, Buffer]> {
    const i = u32Search(this.xattrSlot, this.primary(s))
    if (i < 0) return []
    const set = this.xattrSet[i] as number
    const out: Array<[string, Buffer]> = []
    for (let p = this.setStart[set] as number; p < (this.setStart[set + 1] as number); p++) {
      const q = this.pairStr.subarray(4 * p, 4 * p + 4)
      out.push([this.str8(q[0] as number, q[1] as number), this.str.subarray(q[2] as number, q[3] as number)])
    }
    return out
  }

  xattr(s: number, name: string): Buffer | undefined {
    for (const [k, v] of this.xattrs(s)) if (k === name) return v
    return undefined
  }

  // --------------------------------------------------------------- the chunk mapping

  get chunkCount(): number { return this.chunkOwner.length }

  /** Chunk i in blob order, as the ChunkRef the reader takes. */
  chunk(i: number): ChunkRef {
    const o = this.chunkOwner[i] as number
    const kind = this.digestKind[i] as number
    let digest: string | undefined
    if (kind === DIGEST_SHA256) digest = 'sha256:' + Buffer.from(this.digests.buffer, this.digests.byteOffset + i * DIGEST_BYTES, DIGEST_BYTES).toString('hex')
    else if (kind === DIGEST_STRING) {
      const dv = new DataView(this.digests.buffer, this.digests.byteOffset + i * DIGEST_BYTES, 8)
      digest = this.str8(dv.getUint32(0, true), dv.getUint32(4, true))
    }
    const r: ChunkRef = {
      name: this.str8(this.ownerStr[2 * o] as number, this.ownerStr[2 * o + 1] as number),
      chunkOffset: this.chunkOff[i] as number,
      chunkSize: this.chunkSize[i] as number,
      compressedOffset: this.compOff[i] as number,
      compressedEnd: this.compEnd[i] as number,
      digest,
    }
    if (this.codec !== undefined) r.codec = this.codec
    return r
  }

  /** Every payload member start in blob order (materialised: for prefetch planning). */
  payloads(): ChunkRef[] {
    const out: ChunkRef[] = new Array<ChunkRef>(this.chunkCount)
    for (let i = 0; i < out.length; i++) out[i] = this.chunk(i)
    return out
  }

  /** A file's chunks by TOC-relative path (hardlinks resolved); [] for anything else. */
  chunks(name: string): ChunkRef[] {
    const s = this.lookup(name)
    if (s < 0 || this.isWhiteout(s)) return []
    const p = this.primary(s)
    const first = this.fileChunk[p] as number
    const out: ChunkRef[] = []
    for (let j = 0; j < (this.fileChunkCount[p] as number); j++) out.push(this.chunk(first + j))
    return out
  }

  /** Chunks overlapping [offset, offset + length) of a file. */
  chunksInRange(name: string, offset: number, length: number): ChunkRef[] {
    const s = this.lookup(name)
    if (length <= 0 || s < 0 || this.isWhiteout(s)) return []
    const p = this.primary(s)
    const first = this.fileChunk[p] as number
    const count = this.fileChunkCount[p] as number
    const end = offset + length
    let lo = first
    let hi = first + count - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((this.chunkOff[mid] as number) + (this.chunkSize[mid] as number) <= offset) lo = mid + 1
      else hi = mid
    }
    const out: ChunkRef[] = []
    for (let i = lo; i < first + count; i++) {
      if ((this.chunkOff[i] as number) >= end) break
      out.push(this.chunk(i))
    }
    return out
  }
}

/**
 * Persist an index: temp file + rename, so a crash leaves the old file or the new one, never half.
 * The `restart` workstream reuses this to re-open layers without the registry.
 */
export async function writeIndexFile(path: string, index: CompactIndex): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`
  try {
    await writeFile(tmp, index.bytes(), { mode: 0o600 })
    await rename(tmp, path)
  } catch (e) {
    await rm(tmp, { force: true })
    throw e
  }
}

/** Open a persisted index (one read, digest checked, then used in place). Throws IndexFileError. */
export async function openIndexFile(path: string, limits: IndexLimits = {}): Promise<CompactIndex> {
  return CompactIndex.fromBuffer(await readFile(path), limits)
}
