/**
 * A set of half-open byte ranges [start, end) of a blob, kept as sorted disjoint intervals, so
 * the same bytes are never counted twice in a layer's fetchedSize.
 */
export class FetchedRanges {
  private readonly starts: number[] = []
  private readonly ends: number[] = []
  private sum = 0

  get total(): number {
    return this.sum
  }

  get intervals(): Array<[number, number]> {
    return this.starts.map((s, i) => [s, this.ends[i] as number])
  }

  /** Index of the first interval whose end is >= start (may be touching). */
  private firstTouching(start: number): number {
    let lo = 0
    let hi = this.ends.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((this.ends[mid] as number) < start) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  add(start: number, end: number): void {
    if (end <= start) return
    const i = this.firstTouching(start)
    if (i < this.starts.length && (this.starts[i] as number) <= start && (this.ends[i] as number) >= end) return
    let j = i
    let s = start
    let e = end
    let removed = 0
    while (j < this.starts.length && (this.starts[j] as number) <= end) {
      s = Math.min(s, this.starts[j] as number)
      e = Math.max(e, this.ends[j] as number)
      removed += (this.ends[j] as number) - (this.starts[j] as number)
      j++
    }
    this.starts.splice(i, j - i, s)
    this.ends.splice(i, j - i, e)
    this.sum += e - s - removed
  }

  covers(start: number, end: number): boolean {
    if (end <= start) return true
    const i = this.firstTouching(start)
    return i < this.starts.length && (this.starts[i] as number) <= start && (this.ends[i] as number) >= end
  }
}
