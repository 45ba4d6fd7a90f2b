/** Blob bytes as a stream, hashed on the way: a mismatch is an error at the end of the stream. */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { FetchError, InvalidArgumentError } from '../errors.js'
import type { RangeSource } from '../estargz/types.js'

const PIECE = 4 << 20

function blobDigestError(where: string, expected: string, actual: string): FetchError {
  return new FetchError(`${where}: bytes hash to ${actual}, expected ${expected}`, { expected, actual })
}

function hasherFor(digest: string): { update(b: Buffer): void; done(): string } {
  const algo = digest.slice(0, digest.indexOf(':'))
  if (!['sha256', 'sha384', 'sha512'].includes(algo)) throw new InvalidArgumentError(`cannot verify digest ${digest}: unsupported algorithm`)
  const h = createHash(algo)
  return { update: (b) => h.update(b), done: () => `${algo}:${h.digest('hex')}` }
}

/** Reads `source` front to back in pieces, checking size and digest. */
export async function* rangeSourceStream(source: RangeSource, digest: string, where: string, onBytes?: (n: number) => void): AsyncGenerator<Buffer> {
  const h = hasherFor(digest)
  for (let off = 0; off < source.size; off += PIECE) {
    const b = await source.read(off, Math.min(PIECE, source.size - off))
    h.update(b)
    onBytes?.(b.length)
    yield b
  }
  const got = h.done()
  if (got !== digest) throw blobDigestError(where, digest, got)
}

/** Reads a local file, checking its size and digest. */
export async function* fileStream(path: string, digest: string, size: number | undefined, onBytes?: (n: number) => void): AsyncGenerator<Buffer> {
  const h = hasherFor(digest)
  let n = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const b = chunk as Buffer
    h.update(b)
    n += b.length
    onBytes?.(b.length)
    yield b
  }
  if (size !== undefined && n !== size) throw new FetchError(`${path}: ${n} bytes, descriptor says ${size}`)
  const got = h.done()
  if (got !== digest) throw blobDigestError(path, digest, got)
}

/**
 * Wraps a stream so that whatever the consumer leaves unread is drained by `finish()` — the tar
 * reader stops at the end-of-archive blocks, but the digest covers the whole blob.
 */
export class DrainableStream {
  private readonly it: AsyncIterator<Buffer>
  private ended = false
  constructor(source: AsyncIterable<Buffer>) { this.it = source[Symbol.asyncIterator]() }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      const r = await this.it.next()
      if (r.done) { this.ended = true; return }
      yield r.value
    }
  }

  async finish(): Promise<void> {
    while (!this.ended) {
      const r = await this.it.next()
      if (r.done) this.ended = true
    }
  }

  async abort(): Promise<void> {
    if (!this.ended) { this.ended = true; await this.it.return?.(undefined) }
  }
}
