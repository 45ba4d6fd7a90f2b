import { createHash } from 'node:crypto'
import { createGunzip, gunzip, gunzipSync } from 'node:zlib'
import { ChunkDigestError, StargzError } from '../errors.js'
import type { ChunkRef } from './toc-index.js'
import { zstdDecodeChunk } from './zstd-codec.js'

/**
 * Turns one compressed gzip member into the verified bytes of the chunk it starts with.
 * Implementations may run on the main thread, the libuv pool or worker threads.
 */
export interface ChunkDecoder {
  decode(member: Buffer, ref: ChunkRef, signal?: AbortSignal): Promise<Buffer>
  close?(): Promise<void>
}

/** A member may carry tar headers after the chunk; allow this much before streaming instead. */
const TRAILER_SLACK = 1024 * 1024
/** Below this compressed size a synchronous inflate is cheaper than a thread-pool hop. */
const SYNC_BELOW = 32 * 1024

function isTooLarge(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException)?.code
  return code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError
}

/** Inflate a member, stopping once `want` bytes came out (the rest is unrelated tar data). */
function inflatePrefixStreaming(member: Buffer, want: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const z = createGunzip()
    const parts: Buffer[] = []
    let got = 0
    let settled = false
    const finish = (err?: Error): void => {
      if (settled) return
      settled = true
      z.destroy()
      if (err) reject(err)
      else resolve(Buffer.concat(parts, got).subarray(0, want))
    }
    z.on('data', (b: Buffer) => {
      parts.push(b)
      got += b.length
      if (got >= want) finish()
    })
    z.on('error', (e) => finish(e))
    z.on('end', () => finish())
    z.end(member)
  })
}

function inflateAsync(member: Buffer, cap: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    gunzip(member, { maxOutputLength: cap }, (err, out) => (err ? reject(err) : resolve(out)))
  })
}

export async function inflateChunk(member: Buffer, ref: ChunkRef): Promise<Buffer> {
  if (ref.codec === 'zstd') return zstdDecodeChunk(member, ref)
  const cap = ref.chunkSize + TRAILER_SLACK
  let out: Buffer
  try {
    out = member.length < SYNC_BELOW ? gunzipSync(member, { maxOutputLength: cap }) : await inflateAsync(member, cap)
  } catch (e) {
    if (!isTooLarge(e)) {
      throw new StargzError('ERR_FETCH', `gzip member of ${JSON.stringify(ref.name)} at blob offset ${ref.compressedOffset} does not inflate: ${(e as Error).message}`, { cause: e })
    }
    out = await inflatePrefixStreaming(member, ref.chunkSize)
  }
  if (out.length < ref.chunkSize) {
    throw new StargzError('ERR_FETCH', `gzip member of ${JSON.stringify(ref.name)} at blob offset ${ref.compressedOffset} holds ${out.length} bytes, chunk needs ${ref.chunkSize}`)
  }
  return out.length === ref.chunkSize ? out : out.subarray(0, ref.chunkSize)
}

export function verifyChunk(data: Buffer, ref: ChunkRef): void {
  if (ref.digest === undefined) return
  const actual = 'sha256:' + createHash('sha256').update(data).digest('hex')
  if (actual !== ref.digest) throw new ChunkDigestError(ref.name, ref.chunkOffset, ref.digest, actual)
}

/** Default decoder: zlib (sync for small members, libuv pool otherwise) + sha256. */
export const zlibChunkDecoder: ChunkDecoder = {
  async decode(member, ref) {
    const data = await inflateChunk(member, ref)
    verifyChunk(data, ref)
    return data
  },
}
