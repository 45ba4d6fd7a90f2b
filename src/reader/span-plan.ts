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

/**
 * Cut one requested range ([0, landmark) at prefetch, a background unit) into requests of at
 * most `maxSpanBytes`, on member boundaries, so a big prefetch never becomes one unbounded
 * request or one unbounded buffer. Members in `skip` (streamed on their own) are left out, which
 * cuts the range around them. The spans cover every byte of the range that is not skipped, so
 * the tar headers between members are fetched too (background fetch counts them). A single
 * member longer than the cap gets a span of its own.
 */
export function splitSpan(range: { offset: number; length: number }, refs: readonly ChunkRef[], maxSpanBytes: number, skip: readonly ChunkRef[] = []): Span[] {
  const end = range.offset + range.length
  const skipped = new Set(skip)
  const all = [...refs, ...skip].sort((a, b) => a.compressedOffset - b.compressedOffset)
  const spans: Span[] = []
  let cur: Span = { offset: range.offset, length: 0, refs: [] }
  const close = (at: number): void => {
    cur.length = Math.max(0, Math.min(at, end) - cur.offset)
    if (cur.length > 0 || cur.refs.length > 0) spans.push(cur)
  }
  for (const r of all) {
    if (r.compressedOffset < cur.offset) {
      // Same member twice (two names for one payload), or a member before the range.
      if (!skipped.has(r) && r.compressedEnd <= cur.offset + Math.max(cur.length, 0) && cur.refs.length > 0) cur.refs.push(r)
      else if (!skipped.has(r) && spans.length > 0) (spans[spans.length - 1] as Span).refs.push(r)
      continue
    }
    if (skipped.has(r)) {
      close(r.compressedOffset)
      cur = { offset: r.compressedEnd, length: 0, refs: [] }
      continue
    }
    if (cur.refs.length > 0 && r.compressedEnd - cur.offset > maxSpanBytes) {
      close(r.compressedOffset)
      cur = { offset: r.compressedOffset, length: 0, refs: [] }
    }
    cur.refs.push(r)
    cur.length = r.compressedEnd - cur.offset
  }
  close(end)
  return spans
}
