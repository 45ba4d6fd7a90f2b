import { ChunkDigestError, StargzError } from '../errors.js'
import type { ChunkRef } from '../estargz/toc-index.js'

/** Where a failed chunk lives: what the FUSE layer logs next to the EIO it returns. */
export interface ChunkLocation {
  /** TOC name of the file. */
  path: string
  /** Offset of the chunk in the file. */
  chunkOffset: number
  /** Offset of the chunk's gzip member in the blob. */
  blobOffset: number
  /** Expected chunk digest, when the TOC has one. */
  digest: string | undefined
}

function where(ref: ChunkRef): string {
  return `chunk ${ref.digest ?? '(no digest)'} of ${JSON.stringify(ref.name)} at file offset ${ref.chunkOffset} (blob offset ${ref.compressedOffset})`
}

/** The bytes of a chunk could not be fetched, or fetched bytes do not inflate. */
export class ChunkFetchError extends StargzError implements ChunkLocation {
  readonly path: string
  readonly chunkOffset: number
  readonly blobOffset: number
  readonly digest: string | undefined
  constructor(ref: ChunkRef, reason: string, options?: { cause?: unknown }) {
    super('ERR_FETCH', `cannot read ${where(ref)}: ${reason}`, options)
    this.path = ref.name
    this.chunkOffset = ref.chunkOffset
    this.blobOffset = ref.compressedOffset
    this.digest = ref.digest
  }
}

/** Fetched bytes of a chunk do not hash to its digest: never served, never cached. */
export class ChunkVerifyError extends ChunkDigestError implements ChunkLocation {
  readonly chunkOffset: number
  readonly blobOffset: number
  readonly digest: string | undefined
  constructor(ref: ChunkRef, actual: string) {
    super(ref.name, ref.chunkOffset, ref.digest ?? '', actual)
    this.message = `${this.message} (blob offset ${ref.compressedOffset})`
    this.chunkOffset = ref.chunkOffset
    this.blobOffset = ref.compressedOffset
    this.digest = ref.digest
  }
}

/** Wrap whatever a fetch or decode threw into one of the two typed errors above. */
export function chunkError(ref: ChunkRef, e: unknown): ChunkFetchError | ChunkVerifyError {
  if (e instanceof ChunkVerifyError || e instanceof ChunkFetchError) return e
  if (e instanceof ChunkDigestError) return new ChunkVerifyError(ref, e.actual)
  return new ChunkFetchError(ref, e instanceof Error ? e.message : String(e), { cause: e })
}
