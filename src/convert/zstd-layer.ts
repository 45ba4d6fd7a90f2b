/**
 * Layer annotations of a zstd:chunked layer, besides the eStargz ones (toc.digest and
 * uncompressed-size), as the reference's zstdchunked writer sets them.
 */
import type { ConvertResult } from '../estargz/writer.js'
import { ZSTD_MANIFEST_CHECKSUM_ANNOTATION, ZSTD_MANIFEST_POSITION_ANNOTATION } from '../estargz/zstd-format.js'
import { StargzError } from '../errors.js'

export function zstdLayerAnnotations(r: ConvertResult): Record<string, string> {
  if (!r.zstdChunked) throw new StargzError('ERR_FAILED_PRECONDITION', `conversion ${r.digest} is not zstd:chunked (a cache entry from a gzip conversion?)`)
  return {
    [ZSTD_MANIFEST_CHECKSUM_ANNOTATION]: r.zstdChunked.manifestChecksum,
    [ZSTD_MANIFEST_POSITION_ANNOTATION]: r.zstdChunked.manifestPosition,
  }
}
