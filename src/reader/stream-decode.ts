/**
 * Inflate + verify a gzip member that arrives as a stream of pieces, holding only what the
 * caller asks to keep: a window of the chunk, or nothing (the bytes go to a sink, e.g. a cache
 * file being written). Used for chunks too big to hold in memory (a 1 GiB unchunked file costs
 * one 64 KiB inflate buffer here, not 1 GiB), for members whose trailer is too long for the
 * one-shot path, and for legacy files verified by their whole-file digest.
 *
 * The checks are decodeMember's (`checkChunk`): exactly `size` bytes, hashing to `digest`.
 * Output past `size` is the member's trailer (tar padding, following headers) and is dropped.
 * Nothing in a window may be used unless the outcome is 'ok'.
 */
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createGunzip } from 'node:zlib'
import type { RangeSource } from '../estargz/types.js'
import { checkChunk, type DecodeOutcome } from './decode-member.js'

export interface StreamDecodeOptions {
  /** Uncompressed chunk size: the first `size` bytes of the member's output. */
  size: number
  /** Expected sha256 of those bytes; undefined: not checked here (legacy, whole-file digest). */
  digest: string | undefined
  /** Keep chunk bytes [from, to) (zero-filled buffer, written as they stream by). */
  window?: { from: number; to: number }
  /**
   * Every chunk byte in order, with its offset in the chunk; awaited, so a slow sink slows the
   * inflate instead of buffering.
   */
  sink?: (part: Buffer, at: number) => Promise<void> | void
  signal?: AbortSignal
}

export interface StreamDecodeResult {
  outcome: DecodeOutcome
  /** sha256 of the `size` chunk bytes (when they all came out). */
  hash: string | undefined
}

/** zlib output piece; small enough that hashing one never holds the event loop for long. */
const INFLATE_CHUNK = 64 * 1024

export async function streamDecode(pieces: AsyncIterable<Buffer>, opts: StreamDecodeOptions): Promise<StreamDecodeResult> {
  const { size, window } = opts
  const keep = window ? Buffer.alloc(Math.max(0, window.to - window.from)) : Buffer.alloc(0)
  const z = createGunzip({ chunkSize: INFLATE_CHUNK })
  const h = createHash('sha256')
  const stop = new AbortController()
  let feedError: unknown
  let got = 0
  const feed = (async (): Promise<void> => {
    try {
      for await (const p of pieces) {
        if (stop.signal.aborted) return
        if (!z.write(p)) await once(z, 'drain', { signal: stop.signal })
      }
      z.end()
    } catch (e) {
      if (stop.signal.aborted) return
      feedError = e
      z.destroy(e instanceof Error ? e : new Error(String(e)))
    }
  })()
  let inflateError: unknown
  try {
    for await (const out of z as AsyncIterable<Buffer>) {
      opts.signal?.throwIfAborted()
      const take = Math.min(out.length, size - got)
      const part = take === out.length ? out : out.subarray(0, take)
      h.update(part)
      if (window) {
        const from = Math.max(got, window.from)
        const to = Math.min(got + take, window.to)
        if (to > from) part.copy(keep, from - window.from, from - got, to - got)
      }
      if (opts.sink) await opts.sink(part, got)
      got += take
      if (got >= size) break
    }
  } catch (e) {
    inflateError = e
  } finally {
    stop.abort()
    z.destroy()
    await feed
  }
  if (feedError !== undefined) throw feedError
  if (inflateError !== undefined) {
    if (opts.signal?.aborted) throw opts.signal.reason
    // Anything else came from zlib (the feed's own errors are thrown above): damaged data.
    return { outcome: { kind: 'error', message: inflateError instanceof Error ? inflateError.message : String(inflateError) }, hash: undefined }
  }
  const hash = got >= size ? 'sha256:' + h.digest('hex') : undefined
  const bad = checkChunk(got, size, hash, opts.digest)
  return { outcome: bad ?? { kind: 'ok', data: keep }, hash }
}

/** One buffer as a stream of pieces (the member is in memory already). */
export async function* bufferPieces(b: Buffer, pieceBytes = 1024 * 1024): AsyncGenerator<Buffer> {
  for (let off = 0; off < b.length; off += pieceBytes) yield b.subarray(off, Math.min(b.length, off + pieceBytes))
}

/**
 * [offset, offset + length) of a source as sequential range reads of at most `pieceBytes`, one
 * read ahead of the consumer (so the link stays busy while a piece inflates). At most two pieces
 * are held at a time.
 */
export async function* rangePieces(source: RangeSource, offset: number, length: number, pieceBytes: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const end = offset + length
  let off = offset
  const start = (): Promise<Buffer> | undefined => {
    if (off >= end) return undefined
    const n = Math.min(pieceBytes, end - off)
    const at = off
    off += n
    const p = source.read(at, n, signal).then((b) => {
      if (b.length !== n) throw new Error(`source returned ${b.length} bytes for blob range [${at}, ${at + n})`)
      return b
    })
    // The read ahead may fail while the consumer is busy with the previous piece (abort,
    // preemption); it is awaited later, but must not count as unhandled in between.
    p.catch(() => undefined)
    return p
  }
  let next = start()
  while (next) {
    const cur = await next
    next = start()
    yield cur
  }
}
