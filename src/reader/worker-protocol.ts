/**
 * Messages between WorkerChunkDecoder (main thread) and src/reader/decode-worker.ts.
 * Buffers travel as transferred ArrayBuffers; a decoded chunk is `len` bytes at offset 0.
 */
import type { ChunkCodec } from '../estargz/toc-index.js'
import type { DecodeOutcome } from './decode-member.js'

export type WorkerRequest =
  | { id: number; op: 'decode'; member: Uint8Array; size: number; digest: string | undefined; codec: ChunkCodec }
  | { id: number; op: 'sha256'; data: Uint8Array }

/** A decode outcome with its bytes moved into a transferable buffer. */
export type WireOutcome = Exclude<DecodeOutcome, { kind: 'ok' }> | { kind: 'ok'; buf: ArrayBuffer; len: number }

export type WorkerReply =
  | { id: number; op: 'decode'; outcome: WireOutcome }
  | { id: number; op: 'sha256'; hash: string }
