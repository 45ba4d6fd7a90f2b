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
 *   f64      extra[1] (prefetch landmark's offset, -1 none) | sizes[n] mtimes[n] |
 *            chunkOff[c] chunkSize[c] compOff[c] compEnd[c]
 *   u32      pathStart[n+1] parents[n] primaries[n] modes[n] uids[n] gids[n] rdevs[n] nlinks[n]
 *            childStart[n+1] childList[n-1] fileChunk[n] fileChunkCount[n] chunkOwner[c]
 *            ownerStr[2o] linkSlot[l] linkStr[2l] xattrSlot[x] xattrSet[x] setStart[m+1]
 *            pairStr[4p] fdSlot[f]
 *   u8       flags[n] digestKind[c] digests[32c] fdDigest[32f] strings[s]
 *   trailer  sha256 over every byte before it
 *
 * Strings (paths, link targets, chunk owners, xattr names and raw values) live in one UTF-8 blob;
 * paths are full TOC-relative paths in the InodeTable's sort order (UTF-16 code units), so a
 * lookup is a binary search decoding ~17 short strings. Symlink targets and xattrs are sparse
 * tables keyed by slot; identical xattr sets are stored once. Chunk digests are 32 raw bytes.
 * Whole-file digests are kept only for legacy files whose chunks have none (fdSlot/fdDigest).
 * The header also carries the TOC entry count and a range of the string blob holding the
 * caller's metadata (index-store.ts: TOC digest, footer, blob size), so it is digest-checked too.
 *
 * Version 2 added extra, fdSlot/fdDigest, the no-prefetch flag and the header's e/meta fields.
 */
import { createHash } from 'node:crypto'
import { readFile, writeFile, rename, rm } from 'node:fs/promises'
import { LimitError, TocError } from '../errors.js'
import { TocIndex, type ChunkCodec, type ChunkRef, type LayerIndex } from '../estargz/toc-index.js'
import type { TocEntry, TocEntryType } from '../estargz/types.js'
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../fuse/attr.js'
import { FLAG_OPAQUE, FLAG_WHITEOUT, FLAG_XATTRS, InodeTable, type LayerTree, type TreeSource } from '../fuse/inode-table.js'

export const INDEX_MAGIC = 'SGZIDX\0\0'
export const INDEX_VERSION = 2
const DIGEST_BYTES = 32
const HEADER_FIELDS = ['n', 'c', 'o', 'l', 'x', 'm', 'p', 's', 'maxIno', 'anyFlags', 'f', 'e', 'metaStart', 'metaEnd'] as const
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
  const f64 = place([['extra', 1], ['sizes', k.n], ['mtimes', k.n], ['chunkOff', k.c], ['chunkSize', k.c], ['compOff', k.c], ['compEnd', k.c]], 8)
  const u32 = place([['pathStart', k.n + 1], ['parents', k.n], ['primaries', k.n], ['modes', k.n], ['uids', k.n], ['gids', k.n],
    ['rdevs', k.n], ['nlinks', k.n], ['childStart', k.n + 1], ['childList', Math.max(0, k.n - 1)], ['fileChunk', k.n],
    ['fileChunkCount', k.n], ['chunkOwner', k.c], ['ownerStr', 2 * k.o], ['linkSlot', k.l], ['linkStr', 2 * k.l],
    ['xattrSlot', k.x], ['xattrSet', k.x], ['setStart', k.m + 1], ['pairStr', 4 * k.p], ['fdSlot', k.f]], 4)
  const u8 = place([['flags', k.n], ['digestKind', k.c], ['digests', DIGEST_BYTES * k.c], ['fdDigest', DIGEST_BYTES * k.f], ['strings', k.s]], 1)
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
export function indexFileError(message: string): TocError {
  return new TocError('index-file', message)
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

/** What a payload (chunk) is, in blob order, as a build source gives it. */
export interface PayloadFields {
  name: string
  chunkOffset: number
  chunkSize: number
  compressedOffset: number
  compressedEnd: number
  digest: string | undefined
}

/**
 * What CompactIndex.build reads of a layer: the entries (for InodeTable.build and the symlink,
 * xattr and legacy digest tables; made on demand by the streaming builder), the payloads in blob
 * order and each regular file's run of them.
 */
export interface BuildSource extends TreeSource {
  readonly entryCount: number
  readonly payloadCount: number
  /** `withDigest` false: the digest may be left out (copyDigest gives it raw). */
  payloadFields(i: number, withDigest?: boolean): PayloadFields
  /** Copy payload i's raw sha256 into dst at `at` and return true, or false (then digest is read). */
  copyDigest(i: number, dst: Uint8Array, at: number): boolean
  /** [first payload, count] of a regular file (hardlinks resolved by the caller: primaries only). */
  chunkRun(name: string): [number, number] | undefined
  readonly landmarkOffset: number | undefined
  readonly noPrefetchLandmark: boolean
  readonly codec: ChunkCodec | undefined
}

/** A TocIndex seen as a build source (the object path and the property test). */
function tocIndexSource(index: TocIndex): BuildSource {
  const payloads = index.payloads
  const refAt = new Map<ChunkRef, number>()
  for (let i = 0; i < payloads.length; i++) refAt.set(payloads[i] as ChunkRef, i)
  return {
    entries: index.entries,
    resolve: (name) => index.resolve(name),
    entryCount: index.entries.size,
    payloadCount: payloads.length,
    payloadFields: (i) => payloads[i] as ChunkRef,
    copyDigest: () => false,
    chunkRun: (name) => {
      const refs = index.chunks(name)
      if (refs.length === 0) return undefined
      const first = refAt.get(refs[0] as ChunkRef) as number
      for (let j = 1; j < refs.length; j++) {
        if (refAt.get(refs[j] as ChunkRef) !== first + j) throw new TocError('index-chunks', 'chunks of a file are not contiguous in the TOC', name)
      }
      return [first, refs.length]
    },
    landmarkOffset: index.landmarkOffset,
    noPrefetchLandmark: index.noPrefetchLandmark,
    codec: payloads[0]?.codec,
  }
}

/** One growing UTF-8 blob (one buffer, not one Buffer per string). */
class StringBlob {
  private buf = Buffer.allocUnsafe(64 * 1024)
  length = 0

  add(v: string | Buffer): [number, number] {
    const need = typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length
    if (this.length + need > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + need))
      this.buf.copy(next, 0, 0, this.length)
      this.buf = next
    }
    const at = this.length
    if (typeof v === 'string') this.buf.write(v, at, 'utf8')
    else v.copy(this.buf, at)
    this.length += need
    return [at, this.length]
  }

  view(): Buffer { return this.buf.subarray(0, this.length) }
}

function typeOfMode(mode: number): TocEntryType {
  switch (mode & S_IFMT) {
    case S_IFDIR: return 'dir'
    case S_IFREG: return 'reg'
    case S_IFLNK: return 'symlink'
    case S_IFCHR: return 'char'
    case S_IFBLK: return 'block'
    default: return 'fifo'
  }
}

export class CompactIndex implements LayerTree, LayerIndex {
  readonly count: number
  readonly maxIno: number
  /** True if any slot has xattrs or is an opaque directory: getxattr must then be served. */
  readonly anyXattrs: boolean
  private readonly buf: Buffer
  private readonly str: Buffer
  private readonly extra: Float64Array
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
  private readonly fdSlot: Uint32Array
  private readonly fdDigest: Uint8Array
  private readonly flags: Uint8Array
  private readonly digestKind: Uint8Array
  private readonly digests: Uint8Array
  private reservation: { release(): void } | undefined
  private readonly byteOrdered: boolean
  private readonly codec: ChunkCodec | undefined
  private readonly counts: Counts
  /** Digests of legacy chunks learned by verifying their file (not part of the file). */
  private readonly learned = new Map<number, string>()
  readonly noPrefetchLandmark: boolean

  private constructor(buf: Buffer, k: Counts) {
    this.buf = buf
    const flags = buf.readUInt32LE(12)
    this.byteOrdered = (flags & 1) === 1
    this.codec = CODECS[((flags >> 1) & 3) - 1]
    this.noPrefetchLandmark = (flags & 8) !== 0
    this.counts = k
    const L = layout(k)
    const ab = buf.buffer
    const base = buf.byteOffset
    const f = (name: string): Float64Array => { const [o, n] = L.f64[name] as [number, number]; return new Float64Array(ab, base + o, n) }
    const u = (name: string): Uint32Array => { const [o, n] = L.u32[name] as [number, number]; return new Uint32Array(ab, base + o, n) }
    const b = (name: string): Uint8Array => { const [o, n] = L.u8[name] as [number, number]; return new Uint8Array(ab, base + o, n) }
    this.extra = f('extra'); this.sizes = f('sizes'); this.mtimes = f('mtimes')
    this.chunkOff = f('chunkOff'); this.chunkSize = f('chunkSize'); this.compOff = f('compOff'); this.compEnd = f('compEnd')
    this.pathStart = u('pathStart'); this.parents = u('parents'); this.primaries = u('primaries'); this.modes = u('modes')
    this.uids = u('uids'); this.gids = u('gids'); this.rdevs = u('rdevs'); this.nlinks = u('nlinks')
    this.childStart = u('childStart'); this.childList = u('childList'); this.fileChunk = u('fileChunk')
    this.fileChunkCount = u('fileChunkCount'); this.chunkOwner = u('chunkOwner'); this.ownerStr = u('ownerStr')
    this.linkSlot = u('linkSlot'); this.linkStr = u('linkStr'); this.xattrSlot = u('xattrSlot'); this.xattrSet = u('xattrSet')
    this.setStart = u('setStart'); this.pairStr = u('pairStr'); this.fdSlot = u('fdSlot'); this.fdDigest = b('fdDigest')
    this.flags = b('flags'); this.digestKind = b('digestKind'); this.digests = b('digests')
    const [so, sn] = L.u8.strings as [number, number]
    this.str = buf.subarray(so, so + sn)
    this.count = k.n
    this.maxIno = k.maxIno
    this.anyXattrs = k.anyFlags !== 0
  }

  // ---------------------------------------------------------------- building and the file format

  /**
   * Pack a layer into one buffer: from a TocIndex (the object path, tests) or from the streaming
   * builder's columns (src/index/toc-columns.ts, the mount path). The tree is InodeTable.build's
   * over the same source, so slot numbers, inode numbers and readdir order are the same.
   */
  static build(src: TocIndex | BuildSource, table?: InodeTable, limits: IndexLimits = {}, meta?: Buffer): CompactIndex {
    const source: BuildSource = src instanceof TocIndex ? tocIndexSource(src) : src
    const tab = table ?? InodeTable.build(source)
    const n = tab.count
    const strs = new StringBlob()
    const pathStart = new Uint32Array(n + 1)
    for (let s = 0; s < n; s++) { pathStart[s] = strs.length; strs.add(tab.path(s)) }
    pathStart[n] = strs.length
    // Paths are in UTF-16 order (InodeTable's). Where that is also their UTF-8 byte order (no
    // character >= U+E000 next to an astral one), lookups can compare bytes without decoding.
    const pathBlob = strs.view()
    let byteOrdered = 1
    for (let s = 1; s < n && byteOrdered === 1; s++) {
      if (pathBlob.compare(pathBlob, pathStart[s - 1], pathStart[s], pathStart[s], pathStart[s + 1]) <= 0) byteOrdered = 0
    }
    const interned = new Map<string, [number, number]>()
    const intern = (v: string): [number, number] => {
      let r = interned.get(v)
      if (r === undefined) { r = strs.add(v); interned.set(v, r) }
      return r
    }

    // Chunks in payload (blob) order; each file's chunks are a contiguous run of it, so a chunk's
    // owner is the previous chunk's unless the name changes. Owners that are slots share the
    // slot's path bytes; hidden ones (landmarks) get their own.
    const c = source.payloadCount
    const chunkOwner = new Uint32Array(c)
    const owners: Array<[number, number]> = []
    const digestKind = new Uint8Array(c)
    const digests = new Uint8Array(DIGEST_BYTES * c)
    const chunkOff = new Float64Array(c)
    const chunkSize = new Float64Array(c)
    const compOff = new Float64Array(c)
    const compEnd = new Float64Array(c)
    let lastOwner = ''
    for (let i = 0; i < c; i++) {
      const f = source.payloadFields(i, false)
      if (owners.length === 0 || f.name !== lastOwner) {
        const slot = tab.lookup(f.name)
        owners.push(slot >= 0 ? [pathStart[slot] as number, pathStart[slot + 1] as number] : intern(f.name))
        lastOwner = f.name
      }
      chunkOwner[i] = owners.length - 1
      chunkOff[i] = f.chunkOffset; chunkSize[i] = f.chunkSize; compOff[i] = f.compressedOffset; compEnd[i] = f.compressedEnd
      if (source.copyDigest(i, digests, i * DIGEST_BYTES)) { digestKind[i] = DIGEST_SHA256; continue }
      const d = source.payloadFields(i).digest
      if (d === undefined) continue
      const m = SHA256_RE.exec(d)
      if (m) { digestKind[i] = DIGEST_SHA256; digests.set(Buffer.from(m[1] as string, 'hex'), i * DIGEST_BYTES) }
      else {
        const [a0, e0] = intern(d)
        const dv = new DataView(digests.buffer, i * DIGEST_BYTES, DIGEST_BYTES)
        digestKind[i] = DIGEST_STRING; dv.setUint32(0, a0, true); dv.setUint32(4, e0, true)
      }
    }
    const fileChunk = new Uint32Array(n)
    const fileChunkCount = new Uint32Array(n)
    const links: Array<[number, [number, number]]> = []
    const xattrs: Array<[number, number]> = []
    const fileDigests: Array<[number, Buffer]> = []
    const sets: Array<Array<[[number, number], [number, number]]>> = []
    const setOf = new Map<string, number>()
    let pairs = 0
    for (let s = 0; s < n; s++) {
      if (tab.primary(s) !== s || tab.isWhiteout(s)) continue
      const path = tab.path(s)
      const isReg = tab.isRegular(s)
      const isLink = (tab.mode(s) & S_IFMT) === S_IFLNK
      const xa = tab.hasXattrs(s)
      if (isReg) {
        const run = source.chunkRun(path)
        if (run !== undefined && run[1] > 0) {
          fileChunk[s] = run[0]
          fileChunkCount[s] = run[1]
          // A legacy file whose chunks lack digests is verified by its whole-file digest.
          let missing = false
          for (let j = run[0]; j < run[0] + run[1] && !missing; j++) missing = digestKind[j] === 0
          if (missing) {
            const fd = source.entries.get(path)?.digest
            const m = fd === undefined ? null : SHA256_RE.exec(fd)
            if (m) fileDigests.push([s, Buffer.from(m[1] as string, 'hex')])
          }
        }
      }
      if (!isLink && !xa) continue
      const e: TocEntry | undefined = source.entries.get(path)
      if (isLink && e?.type === 'symlink') links.push([s, intern(e.linkName ?? '')])
      if (xa && e?.xattrs !== undefined) {
        const keys = Object.keys(e.xattrs)
        const sig = JSON.stringify(keys.map((k) => [k, e.xattrs?.[k]]))
        let id = setOf.get(sig)
        if (id === undefined) {
          id = sets.length
          sets.push(keys.map((k) => [intern(k), strs.add(Buffer.from(e.xattrs?.[k] ?? '', 'base64'))]))
          pairs += keys.length
          setOf.set(sig, id)
        }
        xattrs.push([s, id])
      }
    }
    const metaRange = meta === undefined ? [0, 0] : strs.add(meta)

    let anyFlags = 0
    for (let s = 0; s < n; s++) if (tab.hasXattrs(s) || tab.isOpaque(s)) { anyFlags = 1; break }
    const k: Counts = {
      n, c, o: owners.length, l: links.length, x: xattrs.length, m: sets.length, p: pairs, s: strs.length, maxIno: tab.maxIno, anyFlags,
      f: fileDigests.length, e: source.entryCount, metaStart: metaRange[0] as number, metaEnd: metaRange[1] as number,
    }
    const L = layout(k)
    const reservation = reserve(L.total, limits)
    let buf: Buffer
    try { buf = Buffer.alloc(L.total) } catch (e) { reservation?.release(); throw e }
    buf.write(INDEX_MAGIC, 0, 'latin1')
    buf.writeUInt32LE(INDEX_VERSION, 8)
    // flags: bit 0 byte-ordered paths; bits 1-2 the layer's chunk codec (0 none given, 1 gzip,
    // 2 zstd); bit 3 the layer has a no-prefetch landmark.
    const codec = source.codec
    buf.writeUInt32LE(byteOrdered | ((codec === undefined ? 0 : CODECS.indexOf(codec) + 1) << 1) | (source.noPrefetchLandmark ? 8 : 0), 12)
    HEADER_FIELDS.forEach((f, i) => buf.writeUInt32LE(k[f], 16 + 4 * i))
    const idx = new CompactIndex(buf, k)
    // Fill through the views of the new index (they alias `buf`).
    const w = idx as unknown as Record<string, Float64Array | Uint32Array | Uint8Array>
    const fill = (name: string, at: (i: number) => number): void => { const a = w[name] as Float64Array | Uint32Array | Uint8Array; for (let i = 0; i < a.length; i++) a[i] = at(i) }
    idx.extra[0] = source.landmarkOffset ?? -1
    // Per-slot and per-chunk columns in plain typed loops (one closure per column was ~1 s at 100k).
    for (let s = 0; s < n; s++) {
      idx.sizes[s] = tab.size(s); idx.mtimes[s] = tab.mtimeMs(s)
      idx.parents[s] = tab.parent(s); idx.primaries[s] = tab.primary(s)
      // Attribute arrays are per primary; copying through the accessors of the primary is the same.
      idx.modes[s] = tab.mode(s); idx.uids[s] = tab.uid(s); idx.gids[s] = tab.gid(s)
      idx.rdevs[s] = tab.rdev(s); idx.nlinks[s] = tab.nlink(s)
    }
    idx.chunkOff.set(chunkOff); idx.chunkSize.set(chunkSize); idx.compOff.set(compOff); idx.compEnd.set(compEnd)
    idx.pathStart.set(pathStart)
    let cs = 0
    for (let s = 0; s < n; s++) {
      idx.childStart[s] = cs
      if (!tab.isDir(s)) continue
      const kids = tab.children(s)
      idx.childList.set(kids, cs)
      cs += kids.length
    }
    idx.childStart[n] = cs
    idx.fileChunk.set(fileChunk); idx.fileChunkCount.set(fileChunkCount); idx.chunkOwner.set(chunkOwner)
    fill('ownerStr', (i) => (owners[i >> 1] as [number, number])[i & 1] as number)
    fill('linkSlot', (i) => (links[i] as [number, [number, number]])[0]); fill('linkStr', (i) => (links[i >> 1] as [number, [number, number]])[1][i & 1] as number)
    fill('xattrSlot', (i) => (xattrs[i] as [number, number])[0]); fill('xattrSet', (i) => (xattrs[i] as [number, number])[1])
    fill('fdSlot', (i) => (fileDigests[i] as [number, Buffer])[0])
    fileDigests.forEach(([, d], i) => idx.fdDigest.set(d, i * DIGEST_BYTES))
    const setStart: number[] = [0]
    const pairStr: number[] = []
    for (const set of sets) { for (const [key, val] of set) pairStr.push(key[0], key[1], val[0], val[1]); setStart.push(pairStr.length / 4) }
    fill('setStart', (i) => setStart[i] as number); fill('pairStr', (i) => pairStr[i] as number)
    fill('flags', (s) => (tab.isWhiteout(s) ? FLAG_WHITEOUT : 0) | (tab.isOpaque(s) ? FLAG_OPAQUE : 0) | (tab.hasXattrs(s) ? FLAG_XATTRS : 0))
    idx.digestKind.set(digestKind); idx.digests.set(digests)
    strs.view().copy(idx.str)
    createHash('sha256').update(buf.subarray(0, L.total - DIGEST_BYTES)).digest().copy(buf, L.total - DIGEST_BYTES)
    idx.reservation = reservation
    return idx
  }

  /** Use a serialised index in place. Refuses a wrong magic, version, length or digest. */
  static fromBuffer(input: Buffer, limits: IndexLimits = {}): CompactIndex {
    if (input.length < HEADER_BYTES + DIGEST_BYTES) throw indexFileError(`index file too short (${input.length} bytes)`)
    if (input.toString('latin1', 0, 8) !== INDEX_MAGIC) throw indexFileError('not an index file (bad magic)')
    const version = input.readUInt32LE(8)
    if (version !== INDEX_VERSION) throw indexFileError(`index file version ${version}, expected ${INDEX_VERSION}`)
    const k = Object.fromEntries(HEADER_FIELDS.map((f, i) => [f, input.readUInt32LE(16 + 4 * i)])) as Counts
    const L = layout(k)
    if (input.length !== L.total) throw indexFileError(`index file is ${input.length} bytes, its header says ${L.total}`)
    const want = input.subarray(L.total - DIGEST_BYTES)
    const got = createHash('sha256').update(input.subarray(0, L.total - DIGEST_BYTES)).digest()
    if (!got.equals(want)) throw indexFileError('index file digest mismatch')
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
    } else digest = this.learned.get(i)
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

  // --------------------------------------------------------------- the LayerIndex surface

  get entryCount(): number { return this.counts.e }
  get payloadCount(): number { return this.chunkOwner.length }
  payload(i: number): ChunkRef { return this.chunk(i) }
  get landmarkOffset(): number | undefined { const v = this.extra[0] as number; return v < 0 ? undefined : v }

  /** The caller's metadata stored with the index (index-store.ts), or undefined. */
  meta(): Buffer | undefined {
    const { metaStart, metaEnd } = this.counts
    return metaEnd > metaStart ? this.str.subarray(metaStart, metaEnd) : undefined
  }

  /**
   * The entry a slot shows, made on demand: what the mount path reads of a TOC entry (type,
   * mode, owner, size, link target, xattrs, first payload offset, a legacy file's digest).
   * Whiteouts have none (their TOC entries are the ".wh." names, which are not slots).
   */
  private entryAt(s: number, asLink: boolean): TocEntry | undefined {
    if (this.isWhiteout(s)) return undefined
    const p = this.primary(s)
    if (asLink && p !== s) return { name: this.path(s), type: 'hardlink', linkName: this.path(p) }
    const mode = this.modes[p] as number
    const type = typeOfMode(mode)
    const e: TocEntry = { name: this.path(p), type, mode: mode & 0o7777 }
    const uid = this.uids[p] as number
    const gid = this.gids[p] as number
    if (uid !== 0) e.uid = uid
    if (gid !== 0) e.gid = gid
    const ms = this.mtimes[p] as number
    if (ms !== 0) e.modtime = new Date(ms).toISOString()
    if (type === 'reg') {
      e.size = this.sizes[p] as number
      if ((this.fileChunkCount[p] as number) > 0) e.offset = this.compOff[this.fileChunk[p] as number] as number
      const d = u32Search(this.fdSlot, p)
      if (d >= 0) e.digest = 'sha256:' + Buffer.from(this.fdDigest.buffer, this.fdDigest.byteOffset + d * DIGEST_BYTES, DIGEST_BYTES).toString('hex')
    } else if (type === 'symlink') e.linkName = this.linkTarget(p) ?? ''
    if (this.hasXattrs(p)) e.xattrs = Object.fromEntries(this.xattrs(p).map(([k, v]) => [k, v.toString('base64')]))
    return e
  }

  entry(name: string): TocEntry | undefined {
    const s = this.lookup(name)
    return s < 0 ? undefined : this.entryAt(s, true)
  }

  resolve(name: string): TocEntry | undefined {
    const s = this.lookup(name)
    return s < 0 ? undefined : this.entryAt(s, false)
  }

  * regularFiles(): Iterable<TocEntry> {
    for (let s = 0; s < this.count; s++) {
      if (this.primary(s) !== s || !this.isRegular(s) || this.isWhiteout(s) || (this.fileChunkCount[s] as number) === 0) continue
      const e = this.entryAt(s, false)
      if (e !== undefined) yield e
    }
  }

  learnChunkDigest(ref: ChunkRef, digest: string): void {
    ref.digest = digest
    const s = this.lookup(ref.name)
    if (s < 0) return
    const p = this.primary(s)
    const first = this.fileChunk[p] as number
    for (let i = first; i < first + (this.fileChunkCount[p] as number); i++) {
      if (this.chunkOff[i] === ref.chunkOffset) { if (this.digestKind[i] === 0) this.learned.set(i, digest); return }
    }
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

/** Open a persisted index (one read, digest checked, then used in place). Throws a TocError (rule index-file). */
export async function openIndexFile(path: string, limits: IndexLimits = {}): Promise<CompactIndex> {
  return CompactIndex.fromBuffer(await readFile(path), limits)
}
