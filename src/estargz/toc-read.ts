import { createHash } from 'node:crypto'
import { promisify } from 'node:util'
import { gunzip } from 'node:zlib'
import { FooterError, LimitError, TocDigestError, TocError, UnavailableError } from '../errors.js'
import { parseFooter } from './footer.js'
import { readZstdTocJson } from './zstd-toc.js'
import { EXTERNAL_TOC_FOOTER_SIZE, hasExternalTocFooter, type ExternalTocSource } from './external-toc.js'
import { validateToc } from './toc-validate.js'
import { DEFAULT_TOC_LIMITS, FOOTER_SIZE, TOC_TAR_NAME, type Footer, type RangeSource, type Toc, type TocLimits } from './types.js'

const gunzipAsync = promisify(gunzip)

export interface LoadedToc {
  footer: Footer
  toc: Toc
  /** sha256 of the TOC JSON bytes, as in the toc.digest annotation. */
  tocDigest: string
  /** Compressed bytes of TOC member + footer (what a lazy mount has to fetch). */
  tocBytesFetched: number
  /** The verified TOC JSON bytes (the daemon persists them for restore: src/layer/layer-store.ts). */
  json: Buffer
}

export interface LoadTocOptions {
  /** When given, the TOC must hash to this digest or loading fails. */
  tocDigest?: string
  limits?: Partial<TocLimits>
  signal?: AbortSignal
  /**
   * Called with the TOC JSON's size once it is inflated, before it is parsed; throw to refuse
   * the TOC (the daemon-wide metadata budget, src/estargz/metadata-budget.ts).
   */
  beforeParse?: (jsonBytes: number) => void
  /** For a layer whose footer says its TOC is external: the TOC blob, or how to fetch it. */
  externalToc?: ExternalTocSource
}

/** Read the tar header that starts the TOC member and return the JSON payload it carries. */
export function extractTocJson(tarBytes: Buffer): Buffer {
  if (tarBytes.length < 512) throw new TocError('toc-tar', `TOC member inflates to ${tarBytes.length} bytes, less than one tar header`)
  const size = tocTarSize(tarBytes.subarray(0, 512))
  if (512 + size > tarBytes.length) throw new TocError('toc-tar', `TOC tar entry claims ${size} bytes but the member holds ${tarBytes.length - 512}`)
  return tarBytes.subarray(512, 512 + size)
}

/** The JSON size a TOC member's tar header (its first 512 bytes) announces; checks its name. */
export function tocTarSize(h: Buffer): number {
  const nameEnd = h.indexOf(0)
  const name = h.toString('utf8', 0, nameEnd < 0 || nameEnd > 100 ? 100 : nameEnd)
  if (name !== TOC_TAR_NAME) throw new TocError('toc-tar', `first tar entry of the TOC member is ${JSON.stringify(name)}, not ${TOC_TAR_NAME}`)
  const sizeField = h.toString('latin1', 124, 136).replace(/[\0 ]+$/g, '').trim()
  if (!/^[0-7]+$/.test(sizeField)) throw new TocError('toc-tar', `TOC tar header has a bad size field ${JSON.stringify(sizeField)}`)
  return Number.parseInt(sizeField, 8)
}

export function sha256Digest(buf: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(buf).digest('hex')
}

/**
 * The TOC's bytes as fetched, before they become a TOC: a gzip member holding the TOC tar entry
 * (eStargz, legacy, external TOC) or the JSON itself (zstd:chunked, inflated by its frame).
 * loadToc inflates and parses it whole; the streaming index build (src/index/toc-build.ts)
 * inflates and parses it incrementally. Both check the same digest over the same JSON bytes.
 */
export interface FetchedToc {
  footer: Footer
  gzipMember?: Buffer
  json?: Buffer
  /** Compressed bytes of TOC member + footer fetched. */
  fetched: number
  limits: TocLimits
}

/**
 * Fetch footer and TOC from a blob: one read of the tail to find the footer, one read of the TOC
 * member (when the first read did not already cover it), inflate, verify, validate.
 */
export async function loadToc(src: RangeSource, opts: LoadTocOptions = {}): Promise<LoadedToc> {
  const f = await fetchToc(src, opts)
  if (f.json !== undefined) return finishToc(f.json, f.footer, f.fetched, opts, f.limits)
  let tarBytes: Buffer
  try {
    tarBytes = await gunzipAsync(f.gzipMember as Buffer, { maxOutputLength: f.limits.maxTocBytes + 4096 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new LimitError(`TOC inflates to more than ${f.limits.maxTocBytes} bytes`)
    throw new TocError('toc-gzip', `TOC member ${f.footer.kind === 'external' ? 'of the external TOC blob' : `at offset ${f.footer.tocOffset}`} does not inflate: ${(e as Error).message}`, undefined, { cause: e })
  }
  return finishToc(extractTocJson(tarBytes), f.footer, f.fetched, opts, f.limits)
}

/** Footer and the TOC's compressed (or zstd-inflated) bytes; nothing parsed yet. */
export async function fetchToc(src: RangeSource, opts: LoadTocOptions = {}): Promise<FetchedToc> {
  const limits: TocLimits = { ...DEFAULT_TOC_LIMITS, ...opts.limits }
  const size = src.size
  if (size < 47) throw new FooterError(`blob is ${size} bytes, too small to be eStargz`)
  // Guess that the TOC is within the last 64 KiB so small layers cost a single request, or use
  // what the source already holds (a suffix-range open): a TOC bigger than that then costs one
  // read of only the bytes before it.
  const guess = Math.min(size, src.tailLength !== undefined && src.tailLength > 0 ? src.tailLength : 64 * 1024)
  const tail = await src.read(size - guess, guess, opts.signal)
  if (opts.externalToc !== undefined && hasExternalTocFooter(tail)) return fetchExternalToc(size, opts.externalToc, limits, guess)
  const footer = parseFooter(tail.subarray(Math.max(0, tail.length - FOOTER_SIZE)), size)
  if (footer.kind === 'zstd') {
    const z = await readZstdTocJson(src, footer, tail, size - guess, limits, opts.signal)
    return { footer, json: z.json, fetched: z.fetched + guess, limits }
  }
  const tocEnd = size - footer.size
  const tocLen = tocEnd - footer.tocOffset
  if (tocLen > limits.maxTocBytes) throw new LimitError(`compressed TOC is ${tocLen} bytes, more than the limit ${limits.maxTocBytes}`)
  if (footer.tocOffset >= size - guess) {
    // A copy, so the 64 KiB tail is not kept alive by a slice of it.
    return { footer, gzipMember: Buffer.from(tail.subarray(footer.tocOffset - (size - guess), tocEnd - (size - guess))), fetched: guess, limits }
  }
  return { footer, gzipMember: await src.read(footer.tocOffset, tocLen, opts.signal), fetched: guess + tocLen, limits }
}

/** The TOC of an external-TOC layer: a gzip member of its own, as in eStargz; same checks. */
async function fetchExternalToc(size: number, from: ExternalTocSource, limits: TocLimits, fetched: number): Promise<FetchedToc> {
  const payloadEnd = size - EXTERNAL_TOC_FOOTER_SIZE
  const footer: Footer = { kind: 'external', size: EXTERNAL_TOC_FOOTER_SIZE, tocOffset: payloadEnd, payloadEnd }
  let blob: Buffer
  try {
    blob = typeof from === 'function' ? await from() : from
  } catch (e) {
    throw new UnavailableError(`the layer's TOC is external and could not be fetched: ${(e as Error).message}`, { cause: e })
  }
  if (blob.length > limits.maxTocBytes) throw new LimitError(`external TOC blob is ${blob.length} bytes, more than the limit ${limits.maxTocBytes}`)
  return { footer, gzipMember: blob, fetched: fetched + blob.length, limits }
}

/**
 * A TOC whose JSON bytes and footer facts were kept locally (src/layer/layer-store.ts): the same
 * digest check, parse and validation as a TOC read from its blob, none of them skipped.
 */
export function tocFromJson(json: Buffer, footer: Footer, opts: LoadTocOptions = {}): LoadedToc {
  return finishToc(json, footer, 0, opts, { ...DEFAULT_TOC_LIMITS, ...opts.limits })
}

/** Digest check, JSON parse and validation: the same for every TOC container. */
function finishToc(json: Buffer, footer: Footer, fetched: number, opts: LoadTocOptions, limits: TocLimits): LoadedToc {
  const tocDigest = sha256Digest(json)
  if (opts.tocDigest !== undefined && opts.tocDigest !== tocDigest) throw new TocDigestError(opts.tocDigest, tocDigest)
  opts.beforeParse?.(json.length)
  let parsed: unknown
  try {
    parsed = JSON.parse(json.toString('utf8'))
  } catch (e) {
    throw new TocError('json', `TOC is not valid JSON: ${(e as Error).message}`, undefined, { cause: e })
  }
  const toc = validateToc(parsed, { tocOffset: footer.payloadEnd ?? footer.tocOffset, footerKind: footer.kind, limits })
  return { footer, toc, tocDigest, tocBytesFetched: fetched, json }
}
