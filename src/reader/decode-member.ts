/**
 * The one inflate + verify of an in-memory gzip member, used on the main thread (small members)
 * and inside the decode worker (src/reader/decode-worker.ts) alike, so both paths agree on every
 * byte and every refusal. Members too big to hold go through src/reader/stream-decode.ts, which
 * applies the same checks (`checkChunk`) on a stream.
 *
 * This module imports nothing that needs the main thread: it is loaded into worker threads.
 */
import { createHash } from 'node:crypto'
import { gunzipSync } from 'node:zlib'
import type { ChunkCodec } from '../estargz/toc-index.js'
import { zstdDecodePrefix } from '../estargz/zstd-codec.js'

/**
 * A member may carry tar padding and the headers of following entries after the chunk; allow
 * this much output past the chunk before giving up on the one-shot inflate (the caller then
 * streams the member and stops after the chunk).
 */
export const TRAILER_SLACK = 1024 * 1024

/** What a decode came to. Plain data, so it crosses postMessage unchanged. */
export type DecodeOutcome =
  | { kind: 'ok'; data: Buffer }
  /** The bytes hashed to `actual`, not the expected digest. */
  | { kind: 'mismatch'; actual: string }
  /** The member inflated to only `got` bytes. */
  | { kind: 'short'; got: number }
  /** More than TRAILER_SLACK bytes followed the chunk: stream it instead. */
  | { kind: 'too-large' }
  /** Not gzip, or damaged. */
  | { kind: 'error'; message: string }

export function sha256Of(data: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}

/**
 * The rule every decoded chunk must pass: exactly `size` bytes, hashing to `digest` when there
 * is one. `hash` is the digest of the bytes (computed on a stream or at once).
 */
export function checkChunk(got: number, size: number, hash: string | undefined, digest: string | undefined): DecodeOutcome | undefined {
  if (got < size) return { kind: 'short', got }
  if (digest !== undefined && hash !== digest) return { kind: 'mismatch', actual: hash ?? 'unknown' }
  return undefined
}

function isTooLarge(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | undefined)?.code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError
}

/**
 * Inflate `member` and return its first `size` bytes, verified against `digest` (unverified
 * when undefined: legacy chunks, checked by the caller against the whole-file digest).
 * The returned buffer is exactly `size` bytes long; it may be a view of a larger allocation
 * (the cache copies what it keeps, see MemoryCache).
 */
export function decodeMember(member: Uint8Array, size: number, digest: string | undefined, codec: ChunkCodec = 'gzip'): DecodeOutcome {
  let out: Buffer
  if (codec === 'zstd') {
    // zstd:chunked frames decode to exactly the chunk (zstd-codec stops at `size`, growing its
    // buffer with what really comes out), so there is no trailer and no streaming fallback.
    try {
      out = zstdDecodePrefix(member, size, `chunk of ${size} bytes`)
    } catch (e) {
      return { kind: 'error', message: e instanceof Error ? e.message : String(e) }
    }
    const bad = checkChunk(out.length, size, digest === undefined ? undefined : sha256Of(out), digest)
    return bad ?? { kind: 'ok', data: out }
  }
  try {
    // An output buffer sized to the chunk (plus room for the trailer) lets zlib write in one
    // piece instead of growing and concatenating.
    out = gunzipSync(member, { maxOutputLength: size + TRAILER_SLACK, chunkSize: Math.max(64, Math.min(size + TRAILER_SLACK, size + 4096)) })
  } catch (e) {
    if (isTooLarge(e)) return { kind: 'too-large' }
    return { kind: 'error', message: e instanceof Error ? e.message : String(e) }
  }
  let data = out.length === size ? out : out.subarray(0, Math.min(size, out.length))
  const bad = checkChunk(out.length, size, digest === undefined ? undefined : sha256Of(data), digest)
  if (bad) return bad
  // A small chunk followed by its trailer (padding, the next entries' headers) is a small view of
  // a larger output buffer: copy it out so holding the chunk does not hold the trailer's memory.
  if (data.buffer.byteLength - data.length > Math.max(1024, data.length >> 3)) data = Buffer.from(data)
  return { kind: 'ok', data }
}
