/**
 * Read files of a plain gzip layer through its index, on the same terms as eStargz chunks:
 *
 *   read(file, offset, length) → the file's verified pieces (GzFile.chunks, or the whole file's
 *   sha256) → cache, or → the spans under them → cache, or fetch the span's compressed bytes →
 *   decode pool (re-framed gzip member, CRC + sha256 checked off the event loop) → cache.
 *
 * Both levels are kept in the chunk cache under their digest ("sha256:<hex>"), so a directory
 * cache re-verifies what it reads back. But a digest in a gzip index is only a claim about this
 * layer, made by whoever pushed the index: a cache entry of that digest proves the bytes exist
 * somewhere (another layer, another file), not that they are at that place in this layer. So a
 * cache hit is taken only for a span or piece this reader has verified from the layer's own bytes
 * (found by the fuzz bench: a forged piece digest naming another file's cached piece served that
 * file's bytes). In-flight loads are keyed by position as well as digest, for the same reason.
 * The price: gzip-index layers do not share cache entries across layers or daemon restarts.
 * Nothing is served that did not hash to a digest recorded at index time for that file.
 * Memory per read: one file piece (≤ fileChunk) plus the spans under it (≤ 64 MiB each); the
 * verified sets hold one entry per span and per file piece read.
 */
import { createHash } from 'node:crypto'
import { ChunkDigestError, InvalidArgumentError, type TocError } from '../errors.js'
import type { ChunkCache } from '../cache/types.js'
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import type { ChunkRef } from '../estargz/toc-index.js'
import type { RangeSource } from '../estargz/types.js'
import type { LoadMode, ReaderHooks } from '../reader/types.js'
import type { PriorityChunkDecoder } from '../reader/worker-decoder.js'
import { gzIndexError } from './errors.js'
import type { GzFile, GzIndex } from './format.js'
import { inflateSpan, spanByteRange, spanMember, spanOutputSize } from './span-inflate.js'

export interface GzReaderStats { spansFetched: number; bytesFetched: number; cacheHits: number; verifyFailures: number }

export interface GzReaderOptions {
  cache?: ChunkCache
  /** The resolver's decode pool. Default: decode on this thread (CLI, tests). */
  decoder?: ChunkDecoder | PriorityChunkDecoder
  /** The resolver's priority gate: an on-demand fetch pauses background work, as for eStargz. */
  gate?: { beginPriority(): () => void }
  hooks?: ReaderHooks
}

/** Tar names as a path below the root: "./a/b/" and "/a/b" are "a/b"; the root is "". */
export function cleanName(name: string): string {
  const parts: string[] = []
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue
    if (p === '..') { parts.pop(); continue }
    parts.push(p)
  }
  return parts.join('/')
}

export class GzIndexReader {
  private readonly inflight = new Map<number, Promise<Buffer>>()
  private readonly pieces = new Map<string, Promise<Buffer>>()
  /** Spans inflated from this layer's bytes and found to match their digest (see the top). */
  private readonly verifiedSpans = new Set<number>()
  /** File pieces ("uncompressed offset:length:digest") hashed from verified spans and matching. */
  private readonly verifiedPieces = new Set<string>()
  private readonly byName = new Map<string, GzFile>()
  /** Files whose tar header has been checked against the file table. */
  private readonly headerChecked = new WeakSet<GzFile>()
  readonly stats: GzReaderStats = { spansFetched: 0, bytesFetched: 0, cacheHits: 0, verifyFailures: 0 }
  private readonly cache: ChunkCache | undefined

  constructor(readonly index: GzIndex, private readonly source: RangeSource, private readonly o: GzReaderOptions = {}) {
    this.cache = o.cache
    // Later entries win, as when extracting the tar.
    for (const f of index.files) this.byName.set(cleanName(f.name), f)
  }

  lookup(path: string): GzFile | undefined {
    return this.byName.get(cleanName(path))
  }

  /** The spans [first, last] that cover uncompressed [u, u+len). */
  private spanRange(u: number, len: number): [number, number] {
    const spans = this.index.spans
    let lo = 0
    let hi = spans.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (spans[mid]!.u <= u) lo = mid
      else hi = mid - 1
    }
    let last = lo
    while (last + 1 < spans.length && spans[last + 1]!.u < u + len) last++
    return [lo, last]
  }

  /** Verified bytes of span i (without its window). */
  span(i: number, mode: LoadMode = 'demand'): Promise<Buffer> {
    let p = this.inflight.get(i)
    if (p) return p
    p = this.loadSpan(i, mode).finally(() => this.inflight.delete(i))
    this.inflight.set(i, p)
    return p
  }

  private async loadSpan(i: number, mode: LoadMode): Promise<Buffer> {
    const s = this.index.spans[i]!
    const key = `sha256:${s.sha256}`
    const size = spanOutputSize(s)
    const cached = this.verifiedSpans.has(i) ? await this.cache?.get(key) : undefined
    if (cached && cached.length === size) {
      this.stats.cacheHits++
      this.o.hooks?.onCacheHit?.({ key, bytes: size })
      return cached.subarray(s.windowLen)
    }
    const r = spanByteRange(s)
    if (r.offset + r.length > this.source.size) throw new InvalidArgumentError(`span ${i} reaches byte ${r.offset + r.length} of a ${this.source.size}-byte layer`)
    const endPriority = mode === 'background' ? undefined : this.o.gate?.beginPriority()
    let out: Buffer
    try {
      const t0 = performance.now()
      let bytes: Buffer
      try {
        bytes = await this.source.read(r.offset, r.length)
      } catch (e) {
        this.o.hooks?.onFetch?.({ offset: r.offset, length: r.length, ranges: 1, chunks: 1, mode, durationMs: performance.now() - t0, ok: false })
        throw e
      }
      this.stats.spansFetched++
      this.stats.bytesFetched += bytes.length
      this.o.hooks?.onFetch?.({ offset: r.offset, length: bytes.length, ranges: 1, chunks: 1, mode, durationMs: performance.now() - t0, ok: true })
      out = await this.decode(i, bytes, mode)
    } finally {
      endPriority?.()
    }
    this.verifiedSpans.add(i)
    await this.cache?.put(key, out, { background: mode === 'background' })
    return out.subarray(s.windowLen)
  }

  /** window ++ span, checked against the span's CRC and sha256 (decode pool when there is one). */
  private async decode(i: number, bytes: Buffer, mode: LoadMode): Promise<Buffer> {
    const s = this.index.spans[i]!
    const window = this.index.window(i)
    const d = this.o.decoder
    try {
      if (d === undefined) return Buffer.concat([window, inflateSpan(s, bytes, window)])
      const r = spanByteRange(s)
      const ref: ChunkRef = { name: `gzip index span ${i}`, chunkOffset: s.u, chunkSize: spanOutputSize(s), compressedOffset: r.offset, compressedEnd: r.offset + r.length, digest: `sha256:${s.sha256}` }
      return await (d as PriorityChunkDecoder).decode(spanMember(s, bytes, window), ref, undefined, mode === 'background' ? 'low' : 'high')
    } catch (e) {
      this.stats.verifyFailures++
      throw e
    }
  }

  /**
   * The digests prove bytes are the layer's; the file table says where a file is among them.
   * Bind the two: the 512 bytes before a regular file's payload are its own ustar header (PAX and
   * GNU long-name records come before that header), so its checksum, type and size must agree, and
   * its name too unless the name is too long for the field. Checked once per file, before the
   * first byte of it is served.
   */
  private async checkHeader(f: GzFile, mode: LoadMode): Promise<void> {
    if (this.headerChecked.has(f)) return
    const bad = (why: string): TocError => gzIndexError(`file ${JSON.stringify(f.name)} at uncompressed ${f.offset}: ${why}`)
    if (f.offset < 512 || f.offset % 512 !== 0) throw bad('payload offset is not after a tar header')
    const h = await this.readRaw(f.offset - 512, 512, mode)
    let sum = 0
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!
    const field = (o: number, n: number): string => { const b = h.subarray(o, o + n); const z = b.indexOf(0); return (z < 0 ? b : b.subarray(0, z)).toString('utf8') }
    if (parseInt(field(148, 8).trim(), 8) !== sum) throw bad('no tar header before the payload')
    const type = String.fromCharCode(h[156]!)
    if (type !== '0' && type !== '\0' && type !== '7') throw bad(`the header before the payload is of type ${JSON.stringify(type)}`)
    const sizeField = h.subarray(124, 136)
    // Base-256 sizes (GNU, ≥ 8 GiB) and PAX size records: skip the size check, rare and long.
    if ((sizeField[0]! & 0x80) === 0 && f.size < 0o77777777777 && parseInt(field(124, 12).trim() || '0', 8) !== f.size) throw bad('size differs from its tar header')
    const magic = field(257, 6)
    const name = magic === 'ustar' && field(345, 155) !== '' ? `${field(345, 155)}/${field(0, 100)}` : field(0, 100)
    if (Buffer.byteLength(f.name) < 100 && name !== f.name) throw bad(`its tar header names ${JSON.stringify(name)}`)
    this.headerChecked.add(f)
  }

  /** Uncompressed layer bytes [u, u+len), from verified spans. */
  private async readRaw(u0: number, len: number, mode: LoadMode): Promise<Buffer> {
    const u1 = u0 + len
    const [first, last] = this.spanRange(u0, u1 - u0)
    const loads: Promise<Buffer>[] = []
    for (let i = first; i <= last; i++) loads.push(this.span(i, mode))
    const parts = await Promise.all(loads)
    const out = Buffer.alloc(u1 - u0)
    let filled = 0
    for (let k = 0; k < parts.length; k++) {
      const s = this.index.spans[first + k]!
      const from = Math.max(u0, s.u) - s.u
      const to = Math.min(u1, s.u + s.length) - s.u
      filled += parts[k]!.copy(out, Math.max(u0, s.u) - u0, from, to)
    }
    if (filled !== out.length) throw gzIndexError(`read of uncompressed [${u0}, ${u1}): spans gave ${filled} of ${out.length} bytes`)
    return out
  }

  /** Digest (hex) of piece k of file f: its own sha256 when it is one piece. */
  private pieceDigest(f: GzFile, k: number): string {
    const d = f.chunks === undefined ? (k === 0 ? f.sha256 : undefined) : f.chunks[k]
    if (d === undefined) throw gzIndexError(`file ${JSON.stringify(f.name)} has no digest for piece ${k}`)
    return d
  }

  /** Verified bytes of piece k of file f (cache, or its spans then its digest). */
  private piece(f: GzFile, k: number, mode: LoadMode): Promise<Buffer> {
    const C = this.index.fileChunk
    const from = k * C
    const len = Math.min(C, f.size - from)
    const key = `sha256:${this.pieceDigest(f, k)}`
    // Bound to the place in the layer: the same bytes there make the same claim true for any
    // file that names them (hard links, duplicate entries).
    const flight = `${f.offset + from}:${len}:${key}`
    let p = this.pieces.get(flight)
    if (p) return p
    p = (async () => {
      const cached = this.verifiedPieces.has(flight) ? await this.cache?.get(key) : undefined
      if (cached && cached.length === len) {
        this.stats.cacheHits++
        this.o.hooks?.onCacheHit?.({ key, bytes: len })
        return cached
      }
      const data = await this.readRaw(f.offset + from, len, mode)
      const got = `sha256:${createHash('sha256').update(data).digest('hex')}`
      if (got !== key) {
        this.stats.verifyFailures++
        throw new ChunkDigestError(f.name, from, key, got)
      }
      this.verifiedPieces.add(flight)
      await this.cache?.put(key, data, { background: mode === 'background' })
      return data
    })().finally(() => this.pieces.delete(flight))
    this.pieces.set(flight, p)
    return p
  }

  /** Bytes [offset, offset+length) of file f, clipped at its end; every byte from a verified piece of it. */
  async read(f: GzFile, offset: number, length: number, mode: LoadMode = 'demand'): Promise<Buffer> {
    if (f.type !== 'reg') throw new InvalidArgumentError(`${JSON.stringify(f.name)} is a ${f.type}, not a regular file`)
    const end = Math.min(f.size, offset + length)
    if (offset >= end) return Buffer.alloc(0)
    await this.checkHeader(f, mode)
    const C = this.index.fileChunk
    const first = Math.floor(offset / C)
    const last = Math.floor((end - 1) / C)
    if (first === last) {
      const b = await this.piece(f, first, mode)
      return b.subarray(offset - first * C, end - first * C)
    }
    const out = Buffer.alloc(end - offset)
    for (let k = first; k <= last; k++) {
      const b = await this.piece(f, k, mode)
      const from = Math.max(offset, k * C)
      const to = Math.min(end, (k + 1) * C)
      b.copy(out, from - offset, from - k * C, to - k * C)
    }
    return out
  }

  /** Read a whole file and check it against the file's own sha256 too (CLI `index cat`/`verify`). */
  async readVerified(f: GzFile): Promise<Buffer> {
    const data = await this.read(f, 0, f.size)
    const got = createHash('sha256').update(data).digest('hex')
    if (got !== f.sha256) throw new ChunkDigestError(f.name, 0, `sha256:${f.sha256}`, `sha256:${got}`)
    return data
  }
}
