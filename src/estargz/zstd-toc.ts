/**
 * Reads the TOC of a zstd:chunked blob: the skippable frame that wraps it, then its zstd frame,
 * decoded to exactly the length the footer gives (bounded by the TOC byte limit before anything
 * is allocated). The digest and validation that follow are the eStargz ones (toc-read.ts).
 */
import { LimitError, TocError } from '../errors.js'
import type { Footer, RangeSource, TocLimits } from './types.js'
import { zstdDecodePrefix } from './zstd-codec.js'
import { checkTocFrameHeader, SKIPPABLE_HEADER_SIZE, type ZstdFooter } from './zstd-format.js'

export interface ZstdTocBytes {
  json: Buffer
  /** Bytes fetched beyond the tail the caller already read. */
  fetched: number
}

/**
 * `tail` holds the blob's bytes from `tailStart` to its end; the TOC is read from it when it is
 * there, otherwise with one more range request.
 */
export async function readZstdTocJson(src: RangeSource, f: Footer, tail: Buffer, tailStart: number, limits: TocLimits, signal?: AbortSignal): Promise<ZstdTocBytes> {
  const footer = f as ZstdFooter
  if (footer.tocLength > limits.maxTocBytes) throw new LimitError(`compressed TOC is ${footer.tocLength} bytes, more than the limit ${limits.maxTocBytes}`)
  if (footer.tocRawSize > limits.maxTocBytes) throw new LimitError(`TOC is ${footer.tocRawSize} bytes once decoded, more than the limit ${limits.maxTocBytes}`)
  const start = footer.payloadEnd
  const end = footer.tocOffset + footer.tocLength
  let frame: Buffer
  let fetched = 0
  if (start >= tailStart) {
    frame = tail.subarray(start - tailStart, end - tailStart)
  } else {
    frame = await src.read(start, end - start, signal)
    fetched = end - start
  }
  checkTocFrameHeader(frame.subarray(0, SKIPPABLE_HEADER_SIZE), footer)
  let json: Buffer
  try {
    json = zstdDecodePrefix(frame.subarray(SKIPPABLE_HEADER_SIZE), footer.tocRawSize, `the TOC at offset ${footer.tocOffset}`)
  } catch (e) {
    throw new TocError('toc-zstd', (e as Error).message, undefined, { cause: e })
  }
  return { json, fetched }
}
