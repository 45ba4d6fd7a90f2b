import { ChunkDigestError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../errors.js'
import { sha256Digest } from './toc-read.js'
import { zlibChunkDecoder, type ChunkDecoder } from './chunk-decoder.js'
import { TocIndex, type ChunkRef } from './toc-index.js'
import { loadToc, type LoadTocOptions } from './toc-read.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, type Footer, type RangeSource, type Toc, type TocEntry } from './types.js'

export interface ReaderOptions extends LoadTocOptions {
  decoder?: ChunkDecoder
  /**
   * Legacy (CRFS) TOCs may lack chunk digests for multi-chunk files; reading those is refused
   * unless this is set, because the bytes could not be verified.
   */
  allowUnverified?: boolean
}

export interface VerifyReport {
  files: number
  chunks: number
  bytes: number
  unverified: number
}

/** Random access to the files of one eStargz blob, every byte checked against the TOC. */
export class EstargzReader {
  private constructor(
    readonly source: RangeSource,
    readonly footer: Footer,
    readonly toc: Toc,
    readonly tocDigest: string,
    readonly index: TocIndex,
    private readonly decoder: ChunkDecoder,
    private readonly allowUnverified: boolean,
  ) {}

  static async open(source: RangeSource, opts: ReaderOptions = {}): Promise<EstargzReader> {
    const loaded = await loadToc(source, opts)
    const f = loaded.footer
    const index = new TocIndex(loaded.toc, f.payloadEnd ?? f.tocOffset, { prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK }, f.kind === 'zstd' ? 'zstd' : 'gzip')
    return new EstargzReader(source, loaded.footer, loaded.toc, loaded.tocDigest, index, opts.decoder ?? zlibChunkDecoder, opts.allowUnverified ?? false)
  }

  lookup(name: string): TocEntry | undefined {
    return this.index.entries.get(normaliseLookup(name))
  }

  /** Fetch and decode one chunk. */
  async readChunk(ref: ChunkRef, signal?: AbortSignal): Promise<Buffer> {
    this.checkVerifiable(ref)
    const member = await this.source.read(ref.compressedOffset, ref.compressedEnd - ref.compressedOffset, signal)
    return this.decoder.decode(member, ref, signal)
  }

  /** Decode chunks whose members are contiguous in the blob from one fetched span. */
  async decodeSpan(span: Buffer, spanOffset: number, refs: readonly ChunkRef[], signal?: AbortSignal): Promise<Buffer[]> {
    return Promise.all(refs.map((r) => {
      this.checkVerifiable(r)
      const member = span.subarray(r.compressedOffset - spanOffset, r.compressedEnd - spanOffset)
      return this.decoder.decode(member, r, signal)
    }))
  }

  /**
   * Read [offset, offset + length) of a file (clamped to its size). Chunks needed are fetched in
   * one range covering their contiguous members, then inflated and verified independently.
   */
  async readFile(name: string, offset = 0, length?: number, signal?: AbortSignal): Promise<Buffer> {
    const key = normaliseLookup(name)
    const e = this.index.resolve(key)
    if (!e) throw new NotFoundError(`no file ${JSON.stringify(name)} in layer`)
    if (e.type !== 'reg') throw new InvalidArgumentError(`${JSON.stringify(name)} is a ${e.type}, not a regular file`)
    if (offset < 0) throw new InvalidArgumentError(`negative read offset ${offset}`)
    const size = e.size ?? 0
    const end = Math.min(size, length === undefined ? size : offset + length)
    if (offset >= end) return Buffer.alloc(0)
    const refs = this.index.chunksInRange(e.name, offset, end - offset)
    if (refs.some((r) => r.digest === undefined)) return this.readWholeVerified(e, offset, end, signal)
    const first = refs[0]
    const last = refs[refs.length - 1]
    if (!first || !last) return Buffer.alloc(0)
    const span = await this.source.read(first.compressedOffset, last.compressedEnd - first.compressedOffset, signal)
    const parts = await this.decodeSpan(span, first.compressedOffset, refs, signal)
    const joined = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)
    return joined.subarray(offset - first.chunkOffset, end - first.chunkOffset)
  }

  /**
   * Legacy (CRFS) TOCs carry no per-chunk digests, only the whole-file digest: fetch the whole
   * file and check that digest before serving any part of it.
   */
  private async readWholeVerified(e: TocEntry, offset: number, end: number, signal?: AbortSignal): Promise<Buffer> {
    const refs = this.index.chunks(e.name)
    const first = refs[0]
    const last = refs[refs.length - 1]
    if (!first || !last) return Buffer.alloc(0)
    if (e.digest === undefined) this.checkVerifiable(first)
    const span = await this.source.read(first.compressedOffset, last.compressedEnd - first.compressedOffset, signal)
    const parts = await Promise.all(refs.map((r) => this.decoder.decode(span.subarray(r.compressedOffset - first.compressedOffset, r.compressedEnd - first.compressedOffset), r, signal)))
    const whole = Buffer.concat(parts)
    if (e.digest !== undefined) {
      const actual = sha256Digest(whole)
      if (actual !== e.digest) throw new ChunkDigestError(e.name, 0, e.digest, actual)
    }
    return whole.subarray(offset, end)
  }

  /**
   * Fetch every payload member and check every chunk against its digest. Throws the first
   * mismatch (ChunkDigestError) after in-flight work settles.
   */
  async verifyAll(opts: { concurrency?: number; spanBytes?: number; signal?: AbortSignal } = {}): Promise<VerifyReport> {
    const report: VerifyReport = { files: 0, chunks: 0, bytes: 0, unverified: 0 }
    const wholeFiles = new Set<string>()
    const spanBytes = opts.spanBytes ?? 8 * 1024 * 1024
    const payloads = this.index.payloads
    const groups: ChunkRef[][] = []
    let cur: ChunkRef[] = []
    let curStart = 0
    for (const p of payloads) {
      if (cur.length > 0 && p.compressedEnd - curStart > spanBytes) { groups.push(cur); cur = [] }
      if (cur.length === 0) curStart = p.compressedOffset
      cur.push(p)
    }
    if (cur.length > 0) groups.push(cur)
    const concurrency = opts.concurrency ?? 4
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < groups.length) {
        const g = groups[next++] as ChunkRef[]
        const start = (g[0] as ChunkRef).compressedOffset
        const span = await this.source.read(start, (g[g.length - 1] as ChunkRef).compressedEnd - start, opts.signal)
        for (const r of g) {
          if (r.digest === undefined) { wholeFiles.add(r.name); continue }
          const member = span.subarray(r.compressedOffset - start, r.compressedEnd - start)
          const data = await this.decoder.decode(member, r, opts.signal)
          report.chunks++
          report.bytes += data.length
          if (r.chunkOffset === 0) report.files++
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, groups.length) }, worker))
    for (const name of wholeFiles) {
      const e = this.index.entries.get(name)
      const refs = this.index.chunks(name)
      if (!e || e.digest === undefined) { report.unverified += refs.length; continue }
      const data = await this.readWholeVerified(e, 0, e.size ?? 0, opts.signal)
      report.files++
      report.chunks += refs.length
      report.bytes += data.length
    }
    return report
  }

  private checkVerifiable(ref: ChunkRef): void {
    if (ref.digest === undefined && !this.allowUnverified) {
      throw new FailedPreconditionError(`chunk of ${JSON.stringify(ref.name)} at ${ref.chunkOffset} has no digest to verify against (legacy TOC); refusing to serve unverified bytes`)
    }
  }
}

function normaliseLookup(name: string): string {
  return name.split('/').filter((p) => p !== '' && p !== '.').join('/')
}
