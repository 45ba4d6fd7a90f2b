/** A RangeSource over a local file (a blob in an OCI layout or in the conversion cache). */
import { open, type FileHandle } from 'node:fs/promises'
import { FetchError, InvalidArgumentError, NotFoundError } from '../errors.js'
import type { RangeSource } from '../estargz/types.js'

export class LocalBlob implements RangeSource {
  private closed = false
  private constructor(private readonly fh: FileHandle, readonly size: number, readonly path: string) {}

  static async open(path: string): Promise<LocalBlob> {
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`blob file ${path} does not exist`, { cause: e })
      throw e
    }
    return new LocalBlob(fh, (await fh.stat()).size, path)
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new InvalidArgumentError(`read of ${length} bytes at ${offset} is outside ${this.path} (size ${this.size})`)
    }
    const buf = Buffer.allocUnsafe(length)
    for (let done = 0; done < length;) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done)
      if (bytesRead === 0) throw new FetchError(`${this.path} ends at ${offset + done}, before ${offset + length}`)
      done += bytesRead
    }
    return buf
  }

  async readRanges(ranges: ReadonlyArray<{ offset: number; length: number }>): Promise<Buffer[]> {
    return Promise.all(ranges.map((r) => this.read(r.offset, r.length)))
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.fh.close()
  }
}
