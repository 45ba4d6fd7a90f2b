/**
 * Plain tar bytes from a layer stream that may be plain tar or gzip-compressed tar, told apart by
 * magic number. zstd is recognised only to say it is unsupported.
 */
import { Readable, pipeline } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { InvalidArgumentError, TarError } from '../errors.js'

export type LayerCompression = 'gzip' | 'zstd' | 'none'

const GZIP_MAGIC = [0x1f, 0x8b, 0x08]
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd]

export function detectCompression(head: Buffer): LayerCompression {
  if (GZIP_MAGIC.every((b, i) => head[i] === b)) return 'gzip'
  if (ZSTD_MAGIC.every((b, i) => head[i] === b)) return 'zstd'
  return 'none'
}

function toBuffer(v: Buffer | Uint8Array | string): Buffer {
  if (typeof v === 'string') return Buffer.from(v)
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
}

export type ByteInput = AsyncIterable<Buffer | Uint8Array | string> | NodeJS.ReadableStream

/** Yields the uncompressed tar bytes of `input`. */
export async function* decompressLayer(input: ByteInput): AsyncGenerator<Buffer> {
  const it = (input as AsyncIterable<Buffer | Uint8Array | string>)[Symbol.asyncIterator]()
  const first: Buffer[] = []
  let have = 0
  while (have < 4) {
    const r = await it.next()
    if (r.done) break
    const b = toBuffer(r.value)
    first.push(b)
    have += b.length
  }
  const head = Buffer.concat(first)
  const kind = detectCompression(head)
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head
    for (;;) {
      const r = await it.next()
      if (r.done) return
      yield toBuffer(r.value)
    }
  }
  if (kind === 'zstd') {
    await it.return?.()
    throw new InvalidArgumentError('input layer is zstd-compressed: zstd input not supported on Node 20 (decompress it first, e.g. with `zstd -d`)')
  }
  if (kind === 'none') {
    yield* all()
    return
  }
  const gunzip = createGunzip({ chunkSize: 256 * 1024 })
  pipeline(Readable.from(all(), { objectMode: false }), gunzip, () => { /* errors surface through the iterator */ })
  try {
    for await (const chunk of gunzip) yield chunk as Buffer
  } catch (e) {
    if (e instanceof TarError || e instanceof InvalidArgumentError) throw e
    const code = (e as NodeJS.ErrnoException).code
    if (typeof code === 'string' && code.startsWith('Z_')) {
      throw new TarError(`input layer is not a valid gzip stream: ${(e as Error).message}`, { cause: e })
    }
    throw e
  } finally {
    gunzip.destroy()
  }
}
