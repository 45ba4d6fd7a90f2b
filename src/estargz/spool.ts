/**
 * A temporary file holding the payloads of a layer's entries, so entries can be emitted in a
 * different order than they arrived (prioritized files may come last) with bounded memory.
 *
 * The file is unlinked right after it is created: it disappears when closed, even if the process
 * dies. Writes and sequential reads go through large buffers so that many small payloads cost
 * few system calls.
 */
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TarError } from '../errors.js'

const WRITE_BUFFER = 4 << 20
const READ_WINDOW = 8 << 20

export class Spool {
  private writeBuf = Buffer.allocUnsafe(WRITE_BUFFER)
  private writeLen = 0
  /** Bytes appended so far (= offset of the next payload). */
  size = 0
  private flushed = 0
  private window: Buffer = Buffer.alloc(0)
  private windowStart = 0
  private closed = false

  private constructor(private readonly fh: FileHandle) {}

  static async create(dir?: string): Promise<Spool> {
    const d = await mkdtemp(join(dir ?? tmpdir(), 'stargz-spool-'))
    try {
      const fh = await open(join(d, 'payloads'), 'w+', 0o600)
      return new Spool(fh)
    } finally {
      await rm(d, { recursive: true, force: true })
    }
  }

  /** Appends exactly `size` bytes from `body`; returns their offset in the spool. */
  async append(body: AsyncIterable<Buffer>, size: number, name: string): Promise<number> {
    const start = this.size
    let got = 0
    for await (const piece of body) {
      got += piece.length
      let p = 0
      while (p < piece.length) {
        const n = Math.min(piece.length - p, WRITE_BUFFER - this.writeLen)
        piece.copy(this.writeBuf, this.writeLen, p, p + n)
        this.writeLen += n
        p += n
        if (this.writeLen === WRITE_BUFFER) await this.flush()
      }
    }
    if (got !== size) throw new TarError(`tar entry ${JSON.stringify(name)}: payload has ${got} bytes, header says ${size}`)
    this.size += size
    return start
  }

  /** Writes buffered bytes to the file. */
  async flush(): Promise<void> {
    let done = 0
    while (done < this.writeLen) {
      const { bytesWritten } = await this.fh.write(this.writeBuf, done, this.writeLen - done, this.flushed + done)
      done += bytesWritten
    }
    this.flushed += this.writeLen
    this.writeLen = 0
  }

  /**
   * Exactly `length` bytes at `offset` (after `flush`). The result may be a view of an internal
   * window; windows are never reused, so views stay valid.
   */
  async read(offset: number, length: number): Promise<Buffer> {
    if (offset + length > this.flushed) throw new TarError(`spool read of ${length} bytes at ${offset} beyond its end ${this.flushed}`)
    if (offset >= this.windowStart && offset + length <= this.windowStart + this.window.length) {
      return this.window.subarray(offset - this.windowStart, offset - this.windowStart + length)
    }
    if (length >= READ_WINDOW / 2) return this.readAt(offset, length)
    this.window = await this.readAt(offset, Math.min(READ_WINDOW, this.flushed - offset))
    this.windowStart = offset
    return this.window.subarray(0, length)
  }

  private async readAt(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length)
    let done = 0
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done)
      if (bytesRead === 0) throw new TarError(`spool ended early at ${offset + done}`)
      done += bytesRead
    }
    return buf
  }

  /** Closes (and so frees) the spool file; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.writeBuf = Buffer.alloc(0)
    this.window = Buffer.alloc(0)
    await this.fh.close()
  }
}
