/**
 * A layer's TOC straight into a CompactIndex, streaming: the compressed TOC member is inflated
 * piece by piece, its tar header read, and the JSON bytes go through TocEntryScanner (one entry
 * at a time) → TocValidator (the same rules as the whole-JSON path, src/estargz/toc-validate.ts)
 * → TocColumns → CompactIndex.build. Neither the whole JSON string nor the object graph exists at
 * any point; the largest transient buffer is the compressed member.
 *
 * The TOC digest is computed over exactly the JSON bytes, as loadToc does, and wins over any
 * parse or validation error: a TOC that is not the one the annotation names is reported as a
 * digest mismatch even when it is also malformed (the bytes are hashed to the end either way).
 */
import { createHash } from 'node:crypto'
import { createGunzip } from 'node:zlib'
import { LimitError, TocDigestError, TocError } from '../errors.js'
import { defaultMetadataBudget, type MetadataBudget } from '../estargz/metadata-budget.js'
import { fetchToc, tocTarSize, type LoadTocOptions } from '../estargz/toc-read.js'
import { checkTocVersion, TocValidator } from '../estargz/toc-validate.js'
import { DEFAULT_TOC_LIMITS, NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, type Footer, type RangeSource, type TocLimits } from '../estargz/types.js'
import { CompactIndex, type IndexLimits } from './compact-index.js'
import { TocColumns } from './toc-columns.js'
import { TocEntryScanner } from './toc-stream.js'

/**
 * Estimated peak bytes per byte of TOC JSON while the streaming build runs (columns + the tree
 * pass + the index buffer; measured by bench/metadata.ts at 100k entries: ~1 byte per JSON
 * byte). Reserved in the daemon-wide budget for the build; the index then holds its exact size.
 */
export const BUILD_COST_PER_JSON_BYTE = 1.5

export interface CompactTocOptions extends LoadTocOptions {
  /** Daemon-wide budget (default: the process-wide one, config metadata_budget_mb). */
  budget?: MetadataBudget
  /** Per-layer bound on the index's bytes. */
  maxIndexBytes?: number
  /** Names the layer in errors. */
  what?: string
  /** Bytes stored in the index (index-store.ts's record); see CompactIndex.meta(). */
  meta?: (footer: Footer, tocDigest: string) => Buffer
}

export interface CompactToc {
  footer: Footer
  tocDigest: string
  index: CompactIndex
  tocBytesFetched: number
  /** TOC JSON bytes (for logs and figures). */
  jsonBytes: number
}

const PIECE = 64 * 1024

/** Fetch, verify, validate and index a layer's TOC without holding it whole. */
export async function loadCompactToc(src: RangeSource, opts: CompactTocOptions = {}): Promise<CompactToc> {
  const fetched = await fetchToc(src, opts)
  const { footer, limits } = fetched
  const tocOffset = footer.payloadEnd ?? footer.tocOffset
  const budget = opts.budget ?? defaultMetadataBudget
  let reservation: { release(): void } | undefined
  const build = new StreamBuild(tocOffset, footer, limits, (jsonBytes) => {
    opts.beforeParse?.(jsonBytes)
    reservation = budget.reserve(Math.ceil(jsonBytes * BUILD_COST_PER_JSON_BYTE), `${opts.what ?? 'layer'}: TOC of ${jsonBytes} bytes`)
  })
  try {
    if (fetched.json !== undefined) {
      build.header(fetched.json.length)
      for (let at = 0; at < fetched.json.length; at += PIECE) build.json(fetched.json.subarray(at, at + PIECE))
    } else {
      await inflateInto(fetched.gzipMember as Buffer, limits, footer, build)
    }
    const tocDigest = build.digest()
    if (opts.tocDigest !== undefined && opts.tocDigest !== tocDigest) throw new TocDigestError(opts.tocDigest, tocDigest)
    const columns = build.finish()
    const limitsOut: IndexLimits = { budget, what: opts.what ?? 'layer index' }
    if (opts.maxIndexBytes !== undefined) limitsOut.maxBytes = opts.maxIndexBytes
    const index = CompactIndex.build(columns, undefined, limitsOut, opts.meta?.(footer, tocDigest))
    return { footer, tocDigest, index, tocBytesFetched: fetched.fetched, jsonBytes: build.jsonBytes }
  } finally {
    reservation?.release()
  }
}

/**
 * The same streaming build over TOC JSON already in memory (zstd:chunked's inflated frame, tests):
 * fed in 64 KiB pieces, so the string and the object graph still never exist.
 */
export function compactFromTocJson(json: Buffer, footer: Footer, limits: Partial<TocLimits> = {}, tocDigest?: string, indexLimits: IndexLimits = {}): { index: CompactIndex; tocDigest: string } {
  const build = new StreamBuild(footer.payloadEnd ?? footer.tocOffset, footer, { ...DEFAULT_TOC_LIMITS, ...limits }, () => undefined)
  build.header(json.length)
  for (let at = 0; at < json.length; at += PIECE) build.json(json.subarray(at, at + PIECE))
  const digest = build.digest()
  if (tocDigest !== undefined && tocDigest !== digest) throw new TocDigestError(tocDigest, digest)
  return { index: CompactIndex.build(build.finish(), undefined, indexLimits), tocDigest: digest }
}

/** Inflate a TOC gzip member piece by piece: the tar header first, then the JSON into `build`. */
async function inflateInto(member: Buffer, limits: TocLimits, footer: Footer, build: StreamBuild): Promise<void> {
  const gz = createGunzip({ chunkSize: PIECE })
  const maxOut = limits.maxTocBytes + 4096
  let out = 0
  let head: Buffer[] = []
  let headLen = 0
  let want = -1
  const done = new Promise<void>((resolve, reject) => {
    gz.on('data', (chunk: Buffer) => {
      try {
        out += chunk.length
        if (out > maxOut) throw new LimitError(`TOC inflates to more than ${limits.maxTocBytes} bytes`)
        let c = chunk
        if (want < 0) {
          head.push(c)
          headLen += c.length
          if (headLen < 512) return
          const h = Buffer.concat(head)
          head = []
          want = tocTarSize(h.subarray(0, 512))
          build.header(want)
          c = h.subarray(512)
        }
        const take = Math.min(c.length, want - build.jsonBytes)
        if (take > 0) build.json(c.subarray(0, take))
      } catch (e) {
        gz.destroy()
        reject(e)
      }
    })
    gz.on('error', (e) => {
      reject(new TocError('toc-gzip', `TOC member ${footer.kind === 'external' ? 'of the external TOC blob' : `at offset ${footer.tocOffset}`} does not inflate: ${e.message}`, undefined, { cause: e }))
    })
    gz.on('end', () => {
      if (want < 0) reject(new TocError('toc-tar', `TOC member inflates to ${headLen} bytes, less than one tar header`))
      else if (build.jsonBytes < want) reject(new TocError('toc-tar', `TOC tar entry claims ${want} bytes but the member holds ${build.jsonBytes}`))
      else resolve()
    })
  })
  gz.end(member)
  await done
}

/** The JSON side: hash every byte; scan, validate and collect until the first error. */
class StreamBuild {
  private readonly hash = createHash('sha256')
  private readonly validator: TocValidator
  private readonly columns: TocColumns
  private readonly scanner: TocEntryScanner
  private failed: unknown
  private announced = false
  jsonBytes = 0

  constructor(private readonly tocOffset: number, footer: Footer, private readonly limits: TocLimits, private readonly beforeParse: (jsonBytes: number) => void) {
    this.validator = new TocValidator({ tocOffset, footerKind: footer.kind, limits })
    this.columns = new TocColumns({ prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK }, footer.kind === 'zstd' ? 'zstd' : 'gzip')
    this.scanner = new TocEntryScanner((raw) => this.columns.add(this.validator.add(raw)), 1 << 20, false)
  }

  /** The JSON's size is known (tar header, or the zstd frame): refuse it now if too big. */
  header(size: number): void {
    if (size > this.limits.maxTocBytes) throw new LimitError(`TOC is ${size} bytes, more than the limit ${this.limits.maxTocBytes}`)
    this.beforeParse(size)
    this.announced = true
  }

  json(piece: Buffer): void {
    if (!this.announced) throw new TocError('toc-tar', 'TOC bytes before the TOC tar header')
    this.hash.update(piece)
    this.jsonBytes += piece.length
    if (this.failed !== undefined) return
    try {
      this.scanner.write(piece)
    } catch (e) {
      // Keep hashing to the end: a digest mismatch is the more useful report.
      this.failed = e
    }
  }

  digest(): string {
    return 'sha256:' + this.hash.digest('hex')
  }

  finish(): TocColumns {
    if (this.failed !== undefined) throw this.failed
    const r = this.scanner.end()
    checkTocVersion(r.version)
    this.validator.finish()
    return this.columns.finish(this.tocOffset)
  }
}
