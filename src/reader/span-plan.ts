import type { ChunkRef } from '../estargz/toc-index.js'

/** One range request and the chunks whose members it covers. */
export interface Span {
  offset: number
  length: number
  refs: ChunkRef[]
}

export interface SpanPlanOptions {
  /**
   * Merge two members into one request when the bytes between them (members we already have)
   * are at most this many. Over-fetching 256 KiB costs ~10 ms at 200 Mbit/s, half a 20 ms round
   * trip, and ~0.4 ms on loopback — about one request's overhead there (PERF_NOTES).
   */
  mergeGapBytes: number
  /** Never grow one request past this many bytes (bounds the memory one fetch holds). */
  maxSpanBytes: number
}

/**
 * Group chunks into range requests. Members are contiguous in the blob, so chunks that are
 * neighbours in blob order merge with no gap at all.
 */
export function planSpans(refs: readonly ChunkRef[], opts: SpanPlanOptions): Span[] {
  const sorted = [...refs].sort((a, b) => a.compressedOffset - b.compressedOffset)
  const spans: Span[] = []
  let cur: Span | undefined
  for (const r of sorted) {
    if (cur) {
      const end = cur.offset + cur.length
      if (r.compressedOffset < end) {
        // Same member twice (two names for one payload): already covered.
        if (r.compressedEnd <= end) { cur.refs.push(r); continue }
      }
      const gap = r.compressedOffset - end
      if (gap <= opts.mergeGapBytes && r.compressedEnd - cur.offset <= opts.maxSpanBytes) {
        cur.length = r.compressedEnd - cur.offset
        cur.refs.push(r)
        continue
      }
    }
    cur = { offset: r.compressedOffset, length: r.compressedEnd - r.compressedOffset, refs: [r] }
    spans.push(cur)
  }
  return spans
}
