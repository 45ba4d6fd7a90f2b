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
  const h = tarBytes.subarray(0, 512)
  const nameEnd = h.indexOf(0)
  const name = h.toString('utf8', 0, nameEnd < 0 || nameEnd > 100 ? 100 : nameEnd)
  if (name !== TOC_TAR_NAME) throw new TocError('toc-tar', `first tar entry of the TOC member is ${JSON.stringify(name)}, not ${TOC_TAR_NAME}`)
  const sizeField = h.toString('latin1', 124, 136).replace(/[\0 ]+$/g, '').trim()
  if (!/^[0-7]+$/.test(sizeField)) throw new TocError('toc-tar', `TOC tar header has a bad size field ${JSON.stringify(sizeField)}`)
  const size = Number.parseInt(sizeField, 8)
  if (512 + size > tarBytes.length) throw new TocError('toc-tar', `TOC tar entry claims ${size} bytes but the member holds ${tarBytes.length - 512}`)
  return tarBytes.subarray(512, 512 + size)
}

export function sha256Digest(buf: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(buf).digest('hex')
}

/**
 * Fetch footer and TOC from a blob: one read of the tail to find the footer, one read of the TOC
 * member (when the first read did not already cover it), inflate, verify, validate.
 */
export async function loadToc(src: RangeSource, opts: LoadTocOptions = {}): Promise<LoadedToc> {
  const limits: TocLimits = { ...DEFAULT_TOC_LIMITS, ...opts.limits }
  const size = src.size
  if (size < 47) throw new FooterError(`blob is ${size} bytes, too small to be eStargz`)
  // Guess that the TOC is within the last 64 KiB so small layers cost a single request, or use
  // what the source already holds (a suffix-range open): a TOC bigger than that then costs one
  // read of only the bytes before it.
  const guess = Math.min(size, src.tailLength !== undefined && src.tailLength > 0 ? src.tailLength : 64 * 1024)
  let tail = await src.read(size - guess, guess, opts.signal)
  if (opts.externalToc !== undefined && hasExternalTocFooter(tail)) return loadExternalToc(size, opts.externalToc, opts, limits, guess)
  const footer = parseFooter(tail.subarray(Math.max(0, tail.length - FOOTER_SIZE)), size)
  if (footer.kind === 'zstd') {
    const z = await readZstdTocJson(src, footer, tail, size - guess, limits, opts.signal)
    return finishToc(z.json, footer, z.fetched + guess, opts, limits)
  }
  const tocEnd = size - footer.size
  const tocLen = tocEnd - footer.tocOffset
  if (tocLen > limits.maxTocBytes) throw new LimitError(`compressed TOC is ${tocLen} bytes, more than the limit ${limits.maxTocBytes}`)
  let fetched = guess
  let member: Buffer
  if (footer.tocOffset >= size - guess) {
    member = tail.subarray(footer.tocOffset - (size - guess), tocEnd - (size - guess))
  } else {
    member = await src.read(footer.tocOffset, tocLen, opts.signal)
    fetched += tocLen
  }
  tail = Buffer.alloc(0)
  let tarBytes: Buffer
  try {
    tarBytes = await gunzipAsync(member, { maxOutputLength: limits.maxTocBytes + 4096 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new LimitError(`TOC inflates to more than ${limits.maxTocBytes} bytes`)
    throw new TocError('toc-gzip', `TOC member at offset ${footer.tocOffset} does not inflate: ${(e as Error).message}`, undefined, { cause: e })
  }
  return finishToc(extractTocJson(tarBytes), footer, fetched, opts, limits)
}

/** The TOC of an external-TOC layer: a gzip member of its own, as in eStargz; same checks. */
async function loadExternalToc(size: number, from: ExternalTocSource, opts: LoadTocOptions, limits: TocLimits, fetched: number): Promise<LoadedToc> {
  const payloadEnd = size - EXTERNAL_TOC_FOOTER_SIZE
  const footer: Footer = { kind: 'external', size: EXTERNAL_TOC_FOOTER_SIZE, tocOffset: payloadEnd, payloadEnd }
  let blob: Buffer
  try {
    blob = typeof from === 'function' ? await from() : from
  } catch (e) {
    throw new UnavailableError(`the layer's TOC is external and could not be fetched: ${(e as Error).message}`, { cause: e })
  }
  if (blob.length > limits.maxTocBytes) throw new LimitError(`external TOC blob is ${blob.length} bytes, more than the limit ${limits.maxTocBytes}`)
  let tarBytes: Buffer
  try {
    tarBytes = await gunzipAsync(blob, { maxOutputLength: limits.maxTocBytes + 4096 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new LimitError(`TOC inflates to more than ${limits.maxTocBytes} bytes`)
    throw new TocError('toc-gzip', `external TOC blob does not inflate: ${(e as Error).message}`, undefined, { cause: e })
  }
  return finishToc(extractTocJson(tarBytes), footer, fetched + blob.length, opts, limits)
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
