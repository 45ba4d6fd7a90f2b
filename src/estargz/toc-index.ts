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

function parentOf(name: string): string {
  const i = name.lastIndexOf('/')
  return i < 0 ? '' : name.slice(0, i)
}

/**
 * Lookup structures over a validated TOC: entry by name, a file's chunks with their compressed
 * extents, and directory listings (including directories the TOC only implies).
 */
export class TocIndex {
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
