import { TocError } from '../errors.js'
import type { ChunkRef } from './toc-index.js'

/**
 * One chunk digest must stand for one size. Chunks are cached and de-duplicated by digest, so a
 * TOC that gives a digest two sizes asks the reader to serve the bytes of one as the other (a
 * 64 KiB read answered from a cached 32 KiB chunk). Honest writers cannot produce such a TOC:
 * equal digests mean equal bytes, hence equal sizes. Checked once the index has resolved every
 * chunk's size (sizes are implied by the next chunk's offset and the file size).
 */
export function checkDigestSizes(chunks: readonly ChunkRef[]): void {
  const sizes = new Map<string, ChunkRef>()
  for (const c of chunks) {
    if (c.digest === undefined) continue
    const seen = sizes.get(c.digest)
    if (seen === undefined) { sizes.set(c.digest, c); continue }
    if (seen.chunkSize !== c.chunkSize) throw digestTwoSizesError(c, seen)
  }
}

type ChunkFacts = Pick<ChunkRef, 'name' | 'digest' | 'chunkSize' | 'chunkOffset'>

/** The rule's error, shared with the streaming index build (src/index/toc-columns.ts). */
export function digestTwoSizesError(c: ChunkFacts, seen: ChunkFacts): TocError {
  return new TocError('digest-two-sizes', `chunk digest ${c.digest} is given size ${c.chunkSize} here (file offset ${c.chunkOffset}) and size ${seen.chunkSize} for ${JSON.stringify(seen.name)} at file offset ${seen.chunkOffset}`, c.name)
}
