import type { ChunkRef } from './toc-index.js'

/**
 * Turns one compressed gzip member into the bytes of the chunk it starts with, verified against
 * `ref.digest` when the ref has one (legacy chunks without one are checked by the reader against
 * the whole-file digest). Implementations live in src/reader (inline and worker pool) and share
 * one decodeMember().
 */
export interface ChunkDecoder {
  decode(member: Buffer, ref: ChunkRef, signal?: AbortSignal): Promise<Buffer>
  close?(): Promise<void>
}
