/** A RangeSource read front to back as a stream of pieces (for indexing a registry blob). */
import type { RangeSource } from '../estargz/types.js'

export async function* rangeStream(source: RangeSource, step = 4 << 20): AsyncGenerator<Buffer> {
  for (let off = 0; off < source.size; off += step) {
    yield await source.read(off, Math.min(step, source.size - off))
  }
}
