/**
 * A ChunkDecoder on the calling thread: decodeMember() at once, streaming for long trailers.
 * For tools and tests; a daemon serving FUSE uses the worker pool so big members never hold the
 * event loop.
 */
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import { decodeMember } from './decode-member.js'
import { decodeStreaming, outcomeBytes } from './decode-outcome.js'

export const inlineDecoder: ChunkDecoder = {
  async decode(member, ref, signal) {
    signal?.throwIfAborted()
    const o = decodeMember(member, ref.chunkSize, ref.digest, ref.codec)
    if (o.kind === 'too-large') return decodeStreaming(member, ref, signal)
    return outcomeBytes(o, ref)
  },
}
