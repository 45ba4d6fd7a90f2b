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
  /** Run the CPU part elsewhere (a worker pool: toc-build-pool.ts); default inline. */
  builder?: TocBuilder
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
  /** Where the CPU part ran (logs: the layer-opened line). */
  builtBy: 'worker' | 'inline'
}

const PIECE = 64 * 1024

/**
 * Builds the index from a fetched TOC member somewhere else (a worker thread: toc-build-pool.ts).
 * `reserve` runs on the caller's thread once the JSON's size is known; it may throw.
 */
export interface TocBuilder {
  build(req: TocBuildRequest, reserve: (jsonBytes: number) => void): Promise<{ index: Buffer; tocDigest: string; jsonBytes: number }>
}

/** Everything the CPU part needs, all structured-clonable (the member is transferred). */
export interface TocBuildRequest {
  member: Buffer
  footer: Footer
  limits: TocLimits
  tocDigest?: string
  maxIndexBytes?: number
  what: string
}

/** Fetch, verify, validate and index a layer's TOC without holding it whole. */
export async function loadCompactToc(src: RangeSource, opts: CompactTocOptions = {}): Promise<CompactToc> {
  const fetched = await fetchToc(src, opts)
  const { footer, limits } = fetched
  const budget = opts.budget ?? defaultMetadataBudget
  const what = opts.what ?? 'layer index'
  let reservation: { release(): void } | undefined
  const reserve = (jsonBytes: number): void => {
    opts.beforeParse?.(jsonBytes)
    reservation = budget.reserve(Math.ceil(jsonBytes * BUILD_COST_PER_JSON_BYTE), `${opts.what ?? 'layer'}: TOC of ${jsonBytes} bytes`)
  }
  try {
    // The worker path: the gzip member goes over (transferred), the index buffer comes back; the
    // budget is reserved here, between the two. `meta` is a function, so it stays inline.
    if (opts.builder !== undefined && fetched.json === undefined && opts.meta === undefined) {
      const req: TocBuildRequest = { member: fetched.gzipMember as Buffer, footer, limits, what }
      if (opts.tocDigest !== undefined) req.tocDigest = opts.tocDigest
      if (opts.maxIndexBytes !== undefined) req.maxIndexBytes = opts.maxIndexBytes
      const out = await opts.builder.build(req, reserve)
      const index = CompactIndex.fromBuffer(out.index, { budget, what })
      return { footer, tocDigest: out.tocDigest, index, tocBytesFetched: fetched.fetched, jsonBytes: out.jsonBytes, builtBy: 'worker' }
    }
    const limitsOut: IndexLimits = { budget, what }
    if (opts.maxIndexBytes !== undefined) limitsOut.maxBytes = opts.maxIndexBytes
    const built = await buildCompact(fetched, footer, limits, reserve, opts.tocDigest, limitsOut, opts.meta)
    return { footer, tocDigest: built.tocDigest, index: built.index, tocBytesFetched: fetched.fetched, jsonBytes: built.jsonBytes, builtBy: 'inline' }
  } finally {
    reservation?.release()
  }
}

/**
 * The CPU part, the same on the main thread and in a worker (toc-build-worker.ts): inflate,
 * hash, scan, validate, columns, index. `beforeParse` may be async (the worker asks the main
 * thread for the budget); the inflate waits for it.
 */
export async function buildCompact(
  src: { json?: Buffer; gzipMember?: Buffer },
  footer: Footer,
  limits: TocLimits,
  beforeParse: (jsonBytes: number) => void | Promise<void>,
  tocDigest: string | undefined,
  indexLimits: IndexLimits,
  meta?: (footer: Footer, tocDigest: string) => Buffer,
): Promise<{ index: CompactIndex; tocDigest: string; jsonBytes: number }> {
  const build = new StreamBuild(footer.payloadEnd ?? footer.tocOffset, footer, limits)
  if (src.json !== undefined) {
    await build.header(src.json.length, beforeParse)
    for (let at = 0; at < src.json.length; at += PIECE) build.json(src.json.subarray(at, at + PIECE))
  } else {
    await inflateInto(src.gzipMember as Buffer, limits, footer, build, beforeParse)
  }
  const digest = build.digest()
  if (tocDigest !== undefined && tocDigest !== digest) throw new TocDigestError(tocDigest, digest)
  const columns = build.finish()
  const index = CompactIndex.build(columns, undefined, indexLimits, meta?.(footer, digest))
  return { index, tocDigest: digest, jsonBytes: build.jsonBytes }
}

/**
 * The same streaming build over TOC JSON already in memory (zstd:chunked's inflated frame, tests):
 * fed in 64 KiB pieces, so the string and the object graph still never exist.
 */
export function compactFromTocJson(json: Buffer, footer: Footer, limits: Partial<TocLimits> = {}, tocDigest?: string, indexLimits: IndexLimits = {}): { index: CompactIndex; tocDigest: string } {
  const build = new StreamBuild(footer.payloadEnd ?? footer.tocOffset, footer, { ...DEFAULT_TOC_LIMITS, ...limits })
  void build.header(json.length, () => undefined)
  for (let at = 0; at < json.length; at += PIECE) build.json(json.subarray(at, at + PIECE))
  const digest = build.digest()
  if (tocDigest !== undefined && tocDigest !== digest) throw new TocDigestError(tocDigest, digest)
  return { index: CompactIndex.build(build.finish(), undefined, indexLimits), tocDigest: digest }
}

/** Inflate a TOC gzip member piece by piece: the tar header first, then the JSON into `build`. */
async function inflateInto(member: Buffer, limits: TocLimits, footer: Footer, build: StreamBuild, beforeParse: (jsonBytes: number) => void | Promise<void>): Promise<void> {
  const gz = createGunzip({ chunkSize: PIECE })
  const maxOut = limits.maxTocBytes + 4096
  let out = 0
  let head: Buffer[] = []
  let headLen = 0
  let want = -1
  /** The budget answer being waited for: a gzip error meanwhile is reported after it, as inline. */
  let holding: Promise<void> | undefined
  const done = new Promise<void>((resolve, reject) => {
    const feed = (c: Buffer): void => {
      const take = Math.min(c.length, want - build.jsonBytes)
      if (take > 0) build.json(c.subarray(0, take))
    }
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
          const waiting = build.header(want, beforeParse)
          c = h.subarray(512)
          if (waiting !== undefined) {
            // Asynchronous (the worker's budget request): hold the inflate until it is answered.
            gz.pause()
            holding = waiting
            const rest = c
            waiting.then(() => {
              try {
                feed(rest)
                gz.resume()
              } catch (e) {
                gz.destroy()
                reject(e)
              }
            }, (e: unknown) => {
              gz.destroy()
              reject(e)
            })
            return
          }
        }
        feed(c)
      } catch (e) {
        gz.destroy()
        reject(e)
      }
    })
    gz.on('error', (e) => {
      const fail = (): void => reject(new TocError('toc-gzip', `TOC member ${footer.kind === 'external' ? 'of the external TOC blob' : `at offset ${footer.tocOffset}`} does not inflate: ${e.message}`, undefined, { cause: e }))
      if (holding === undefined) fail()
      else holding.then(fail, () => undefined)
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

  constructor(private readonly tocOffset: number, footer: Footer, private readonly limits: TocLimits) {
    this.validator = new TocValidator({ tocOffset, footerKind: footer.kind, limits })
    this.columns = new TocColumns({ prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK }, footer.kind === 'zstd' ? 'zstd' : 'gzip')
    this.scanner = new TocEntryScanner((raw) => this.columns.add(this.validator.add(raw)), 1 << 20, false)
  }

  /**
   * The JSON's size is known (tar header, or the zstd frame): refuse it now if too big, then
   * tell `beforeParse` (the budget). Returns its promise when it is asynchronous.
   */
  header(size: number, beforeParse: (jsonBytes: number) => void | Promise<void>): Promise<void> | undefined {
    if (size > this.limits.maxTocBytes) throw new LimitError(`TOC is ${size} bytes, more than the limit ${this.limits.maxTocBytes}`)
    const p = beforeParse(size)
    this.announced = true
    return p === undefined ? undefined : p
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
