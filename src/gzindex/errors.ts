/**
 * The gzip index plays the TOC's role for plain gzip layers, so its refusals are TocErrors (code
 * ERR_TOC_INVALID → EIO in a mount, a refused mount in the daemon) with the rule "gzindex", not a
 * class of their own (one class per code, all in src/errors.ts). Bytes that do not hash to an
 * index digest are a ChunkDigestError, as for eStargz chunks.
 */
import { TocError } from '../errors.js'

export function gzIndexError(message: string, options?: { cause?: unknown }): TocError {
  return new TocError('gzindex', `gzip index: ${message}`, undefined, options)
}
