import { open, type FileHandle } from 'node:fs/promises'
import { FetchError, InvalidArgumentError, NotFoundError } from '../errors.js'
import type { RangeSource } from './types.js'

/**
 * A RangeSource over a local file: a blob given on the command line, in an OCI layout or in the
 * conversion cache. The only file-backed one, so every caller gets the same checks and messages.
 */
export class FileRangeSource implements RangeSource {
  private closed = false
  private constructor(private readonly fh: FileHandle, readonly size: number, readonly path: string) {}

  static async open(path: string): Promise<FileRangeSource> {
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT') throw new NotFoundError(`blob file ${path} does not exist`, { cause: e })
      throw new InvalidArgumentError(`cannot open blob file ${path}: ${(e as Error).message}`, { cause: e })
    }
    const st = await fh.stat()
    if (!st.isFile()) { await fh.close(); throw new InvalidArgumentError(`${path} is not a regular file`) }
    return new FileRangeSource(fh, st.size, path)
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new InvalidArgumentError(`read of ${length} bytes at ${offset} is outside ${this.path} (size ${this.size})`)
    }
    const buf = Buffer.allocUnsafe(length)
    let done = 0
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done)
      if (bytesRead === 0) throw new FetchError(`unexpected end of ${this.path} at ${offset + done}`)
      done += bytesRead
    }
    return buf
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.fh.close()
  }
}
