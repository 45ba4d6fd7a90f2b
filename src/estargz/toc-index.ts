import { checkDigestSizes } from './toc-digest-sizes.js'
import type { Toc, TocEntry } from './types.js'

/** How a layer's members are compressed: gzip (eStargz, legacy stargz) or zstd (zstd:chunked). */
export type ChunkCodec = 'gzip' | 'zstd'

/** Where one chunk of a file lives, compressed and uncompressed. */
export interface ChunkRef {
  /** TOC name of the file that owns the payload (hardlinks resolved). */
  name: string
  /** Offset of the chunk within the file. */
  chunkOffset: number
  chunkSize: number
  /** [compressedOffset, compressedEnd) is the gzip member that starts with this chunk. */
  compressedOffset: number
  compressedEnd: number
  /** sha256 the chunk's bytes must hash to, when known. */
  digest: string | undefined
  /** Absent means gzip. */
  codec?: ChunkCodec
}

/**
 * What a mounted layer reads of its index (src/layer, src/reader, src/fuse): TocIndex over the
 * parsed TOC objects, and src/index/compact-index.ts's CompactIndex (one buffer, no per-entry
 * objects) answer it identically for every name a mount serves (test/index checks that).
 * Entries handed out are made on demand by the compact index: read them, do not keep them.
 */
export interface LayerIndex {
  /** TOC entries (chunks aside, implied directories included). */
  readonly entryCount: number
  /** The entry of a cleaned TOC name ('' is the root). */
  entry(name: string): TocEntry | undefined
  /** The entry whose payload a name refers to (follows one hardlink). */
  resolve(name: string): TocEntry | undefined
  chunks(name: string): readonly ChunkRef[]
  /** Chunks overlapping [offset, offset + length) of a file. */
  chunksInRange(name: string, offset: number, length: number): ChunkRef[]
  /** Payload members in blob order (prefetch, background fetch): payload(0 … payloadCount-1). */
  readonly payloadCount: number
  payload(i: number): ChunkRef
  /** Compressed offset of the prefetch landmark's payload, if the layer has one. */
  readonly landmarkOffset: number | undefined
  readonly noPrefetchLandmark: boolean
  /** Every regular file that owns a payload (stargz verify). */
  regularFiles(): Iterable<TocEntry>
  /**
   * A legacy chunk's digest is now known (its file verified against the whole-file digest):
   * later chunks()/chunksInRange() carry it, so the file is not verified again.
   */
  learnChunkDigest(ref: ChunkRef, digest: string): void
}

function parentOf(name: string): string {
  const i = name.lastIndexOf('/')
  return i < 0 ? '' : name.slice(0, i)
}

/**
 * Lookup structures over a validated TOC: entry by name, a file's chunks with their compressed
 * extents, and directory listings (including directories the TOC only implies).
 */
export class TocIndex implements LayerIndex {
  readonly entries = new Map<string, TocEntry>()
  readonly children = new Map<string, string[]>()
  private readonly chunkMap = new Map<string, ChunkRef[]>()
  /** Every payload member start in blob order, for prefetch and background fetch. */
  readonly payloads: ChunkRef[] = []
  readonly landmark: TocEntry | undefined
  readonly noPrefetchLandmark: boolean

  /** `tocOffset`: where the last payload member ends (the TOC's first byte, or its frame's). */
  constructor(toc: Toc, tocOffset: number, landmarks: { prefetch: string; noPrefetch: string }, private readonly codec: ChunkCodec = 'gzip') {
    const root: TocEntry = { name: '', type: 'dir', mode: 0o755 }
    this.entries.set('', root)
    this.children.set('', [])
    let current: ChunkRef[] | undefined
    for (const e of toc.entries) {
      if (e.type === 'chunk') {
        if (!current) continue // validated: cannot happen
        current.push(this.ref(e, e.chunkDigest))
        continue
      }
      if (e.name === '') { this.entries.set('', { ...e, name: '' }); continue }
      this.ensureDir(parentOf(e.name))
      this.entries.set(e.name, e)
      this.children.get(parentOf(e.name))?.push(e.name)
      if (e.type === 'dir' && !this.children.has(e.name)) this.children.set(e.name, [])
      current = undefined
      if (e.type === 'reg' && (e.size ?? 0) > 0) {
        // A single-chunk file in a legacy TOC may lack chunkDigest: its whole-file digest covers it.
        const single = (e.chunkSize ?? 0) === 0 || e.chunkSize === e.size
        const digest = e.chunkDigest ?? (single ? e.digest : undefined)
        current = [this.ref(e, digest)]
        this.chunkMap.set(e.name, current)
      }
    }
    // Each member ends where the next payload starts (or at the TOC).
    for (let i = 0; i < this.payloads.length; i++) {
      const p = this.payloads[i] as ChunkRef
      p.compressedEnd = i + 1 < this.payloads.length ? (this.payloads[i + 1] as ChunkRef).compressedOffset : tocOffset
    }
    // Resolve chunk sizes now that each file's size is known.
    for (const [name, refs] of this.chunkMap) {
      const size = this.entries.get(name)?.size ?? 0
      for (let i = 0; i < refs.length; i++) {
        const r = refs[i] as ChunkRef
        const next = refs[i + 1]
        r.chunkSize = next ? next.chunkOffset - r.chunkOffset : size - r.chunkOffset
      }
    }
    checkDigestSizes(this.payloads)
    this.landmark = this.entries.get(landmarks.prefetch)
    this.noPrefetchLandmark = this.entries.has(landmarks.noPrefetch)
  }

  get entryCount(): number { return this.entries.size }
  entry(name: string): TocEntry | undefined { return this.entries.get(name) }
  get payloadCount(): number { return this.payloads.length }
  payload(i: number): ChunkRef { return this.payloads[i] as ChunkRef }
  get landmarkOffset(): number | undefined { return this.landmark === undefined ? undefined : (this.landmark.offset ?? 0) }

  * regularFiles(): Iterable<TocEntry> {
    for (const [name, e] of this.entries) if (e.type === 'reg' && this.chunkMap.has(name)) yield e
  }

  /** The refs handed out are this index's own objects: setting the digest on them is the record. */
  learnChunkDigest(ref: ChunkRef, digest: string): void {
    ref.digest = digest
  }

  private ref(e: TocEntry, digest: string | undefined): ChunkRef {
    const r: ChunkRef = {
      name: e.name,
      chunkOffset: e.chunkOffset ?? 0,
      chunkSize: 0,
      compressedOffset: e.offset ?? 0,
      compressedEnd: 0,
      digest,
      // Always set, so every ref has one shape.
      codec: this.codec,
    }
    this.payloads.push(r)
    return r
  }

  private ensureDir(dir: string): void {
    if (this.entries.has(dir)) {
      if (!this.children.has(dir)) this.children.set(dir, [])
      return
    }
    this.ensureDir(parentOf(dir))
    this.entries.set(dir, { name: dir, type: 'dir', mode: 0o755 })
    this.children.set(dir, [])
    this.children.get(parentOf(dir))?.push(dir)
  }

  /** The entry whose payload a name refers to (follows one hardlink). */
  resolve(name: string): TocEntry | undefined {
    const e = this.entries.get(name)
    if (e?.type === 'hardlink' && e.linkName !== undefined) return this.entries.get(e.linkName)
    return e
  }

  chunks(name: string): readonly ChunkRef[] {
    const e = this.resolve(name)
    return (e && this.chunkMap.get(e.name)) ?? []
  }

  /** Chunks overlapping [offset, offset + length) of a file. */
  chunksInRange(name: string, offset: number, length: number): ChunkRef[] {
    const all = this.chunks(name)
    if (length <= 0 || all.length === 0) return []
    const end = offset + length
    // Binary search for the first chunk ending after offset.
    let lo = 0
    let hi = all.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      const c = all[mid] as ChunkRef
      if (c.chunkOffset + c.chunkSize <= offset) lo = mid + 1
      else hi = mid
    }
    const out: ChunkRef[] = []
    for (let i = lo; i < all.length; i++) {
      const c = all[i] as ChunkRef
      if (c.chunkOffset >= end) break
      out.push(c)
    }
    return out
  }
}

/** Every payload of an index, materialised (tools and tests; the layer walks them by index). */
export function allPayloads(index: LayerIndex): ChunkRef[] {
  const out: ChunkRef[] = new Array<ChunkRef>(index.payloadCount)
  for (let i = 0; i < out.length; i++) out[i] = index.payload(i)
  return out
}
