/**
 * Exact-length reads over an async iterable of Buffers, with the absolute offset tracked so
 * errors can say where the input ended.
 */
import { TarError } from '../errors.js'

export class ByteSource {
  private readonly it: AsyncIterator<Buffer | Uint8Array | string>
  private buf: Buffer = Buffer.alloc(0)
  private ended = false
  /** Bytes consumed so far (offset of the next byte `read` returns). */
  offset = 0

  constructor(input: AsyncIterable<Buffer | Uint8Array | string>) {
    this.it = input[Symbol.asyncIterator]()
  }

  /** Pulls one more input chunk into the buffer; false at end of input. */
  private async fill(): Promise<boolean> {
    if (this.ended) return false
    for (;;) {
      const r = await this.it.next()
      if (r.done) { this.ended = true; return false }
      const v = r.value
      const chunk = typeof v === 'string' ? Buffer.from(v) : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
      if (chunk.length === 0) continue
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
      return true
    }
  }

  /** Up to `n` bytes (fewer only at end of input); a zero-length result means end of input. */
  async readUpTo(n: number): Promise<Buffer> {
    while (this.buf.length < n) if (!(await this.fill())) break
    const take = Math.min(n, this.buf.length)
    const out = this.buf.subarray(0, take)
    this.buf = this.buf.subarray(take)
    this.offset += take
    return out
  }

  /** Exactly `n` bytes or a TarError naming `what` and the offset where the input ran out. */
  async readExact(n: number, what: string): Promise<Buffer> {
    const start = this.offset
    const out = await this.readUpTo(n)
    if (out.length < n) throw new TarError(`truncated tar: input ended at offset ${start + out.length} inside ${what} (needed ${n} bytes from offset ${start})`)
    return out
  }

  /**
   * Yields pieces totalling exactly `n` bytes without copying the input chunks; throws TarError if
   * the input ends first. Pieces are views of input buffers: copy them if you keep them.
   */
  async *pieces(n: number, what: string): AsyncGenerator<Buffer> {
    const start = this.offset
    let left = n
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.fill())) {
        throw new TarError(`truncated tar: input ended at offset ${this.offset} inside ${what} (needed ${n} bytes from offset ${start})`)
      }
      const take = Math.min(left, this.buf.length)
      const out = this.buf.subarray(0, take)
      this.buf = this.buf.subarray(take)
      this.offset += take
      left -= take
      yield out
    }
  }

  /** Discards exactly `n` bytes (TarError if the input ends first). */
  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.pieces(n, what)) { /* discard */ }
  }

  /** Drains and discards the rest of the input. */
  async drain(): Promise<void> {
    this.buf = Buffer.alloc(0)
    while (await this.fill()) this.buf = Buffer.alloc(0)
  }

  /** Stops pulling from the input (lets a stream source release its resources). */
  async close(): Promise<void> {
    this.ended = true
    this.buf = Buffer.alloc(0)
    await this.it.return?.()
  }
}
