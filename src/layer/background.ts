import type { ChunkRef } from '../estargz/toc-index.js'

/** A run of whole gzip members fetched as one background unit. */
export interface FetchUnit {
  offset: number
  end: number
  refs: ChunkRef[]
}

/**
 * Cut [0, tocOffset) into units of at least `unitBytes` (except the last), on member
 * boundaries so every unit decodes on its own. The first unit starts at 0 so it also covers the
 * tar headers that precede the first payload member.
 */
export function planUnits(payloads: readonly ChunkRef[], tocOffset: number, unitBytes: number): FetchUnit[] {
  const units: FetchUnit[] = []
  let cur: FetchUnit = { offset: 0, end: 0, refs: [] }
  for (const p of payloads) {
    if (cur.refs.length > 0 && cur.end - cur.offset >= unitBytes) {
      units.push(cur)
      cur = { offset: p.compressedOffset, end: p.compressedOffset, refs: [] }
    }
    cur.refs.push(p)
    cur.end = p.compressedEnd
  }
  cur.end = Math.max(cur.end, tocOffset)
  if (cur.end > cur.offset) units.push(cur)
  return units
}
