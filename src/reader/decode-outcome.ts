/** Turns a decode outcome (main thread or worker) into the chunk's bytes or a typed error. */
import { ChunkDigestError, StargzError } from '../errors.js'
import type { ChunkRef } from '../estargz/toc-index.js'
import type { DecodeOutcome } from './decode-member.js'
import { bufferPieces, streamDecode } from './stream-decode.js'

function where(ref: ChunkRef): string {
  return `gzip member of ${JSON.stringify(ref.name)} at blob offset ${ref.compressedOffset}`
}

/** The typed error for an outcome that is not 'ok'. */
export function outcomeError(o: Exclude<DecodeOutcome, { kind: 'ok' }>, ref: ChunkRef): StargzError {
  switch (o.kind) {
    case 'mismatch':
      return new ChunkDigestError(ref.name, ref.chunkOffset, ref.digest ?? '', o.actual)
    case 'short':
      return new StargzError('ERR_FETCH', `${where(ref)} holds ${o.got} bytes, chunk needs ${ref.chunkSize}`)
    case 'error':
      return new StargzError('ERR_FETCH', `${where(ref)} does not inflate: ${o.message}`)
    case 'too-large':
      return new StargzError('ERR_FETCH', `${where(ref)} carries too much data after the chunk`)
  }
}

/** The bytes of an 'ok' outcome (exactly the chunk's size); throws the typed error otherwise. */
export function outcomeBytes(o: DecodeOutcome, ref: ChunkRef): Buffer {
  if (o.kind !== 'ok') throw outcomeError(o, ref)
  if (o.data.length !== ref.chunkSize) throw new StargzError('ERR_FETCH', `${where(ref)}: decoder returned ${o.data.length} bytes, chunk is ${ref.chunkSize}`)
  return o.data
}

/**
 * The member carries more than TRAILER_SLACK bytes after the chunk (headers of many small
 * entries): stream it and stop after the chunk.
 */
export async function decodeStreaming(member: Buffer, ref: ChunkRef, signal?: AbortSignal): Promise<Buffer> {
  const opts: Parameters<typeof streamDecode>[1] = { size: ref.chunkSize, digest: ref.digest, window: { from: 0, to: ref.chunkSize } }
  if (signal !== undefined) opts.signal = signal
  const r = await streamDecode(bufferPieces(member), opts)
  return outcomeBytes(r.outcome, ref)
}
