/**
 * The gzip index plays the TOC's role for plain gzip layers, so its errors carry the TOC's code
 * (ERR_TOC_INVALID → EIO in a mount, a refused mount in the daemon) instead of adding a code to
 * src/errors.ts, which another workstream owns. Bytes that do not hash to the index's span digest
 * are a ChunkDigestError, as for eStargz chunks.
 */
import { TocError } from '../errors.js'

export class GzIndexError extends TocError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('gzindex', `gzip index: ${message}`, undefined, options)
  }
}
