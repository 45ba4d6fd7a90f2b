/**
 * An eStargz blob opened for reading without a mount (the CLI's cat and verify, tools, tests):
 * the TOC (EstargzReader) plus a ChunkReader over it, with no cache unless one is given. Bytes
 * come out through ChunkReader.read exactly as they do through FUSE.
 */
import type { ChunkCache } from '../cache/types.js'
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import { EstargzReader, type ReaderOptions } from '../estargz/reader.js'
import type { RangeSource, TocEntry } from '../estargz/types.js'
import { ChunkReader } from './chunk-reader.js'
import type { ChunkReaderOptions } from './types.js'
import { verifyBlob, type VerifyOptions, type VerifyReport } from './verify-blob.js'

export interface BlobReaderOptions extends ReaderOptions {
  cache?: ChunkCache
  decoder?: ChunkDecoder
  /** See ChunkReaderOptions. */
  maxChunkInMemoryBytes?: number
}

export class BlobReader {
  private constructor(readonly meta: EstargzReader, readonly chunks: ChunkReader) {}

  static async open(source: RangeSource, opts: BlobReaderOptions = {}): Promise<BlobReader> {
    const meta = await EstargzReader.open(source, opts)
    const o: ChunkReaderOptions = { reader: meta, readaheadBytes: 0 }
    if (opts.cache !== undefined) o.cache = opts.cache
    if (opts.decoder !== undefined) o.decoder = opts.decoder
    if (opts.maxChunkInMemoryBytes !== undefined) o.maxChunkInMemoryBytes = opts.maxChunkInMemoryBytes
    return new BlobReader(meta, new ChunkReader(o))
  }

  get index(): EstargzReader['index'] { return this.meta.index }
  get toc(): EstargzReader['toc'] { return this.meta.toc }
  get tocDigest(): string { return this.meta.tocDigest }
  get footer(): EstargzReader['footer'] { return this.meta.footer }
  get source(): RangeSource { return this.meta.source }

  lookup(name: string): TocEntry | undefined {
    return this.meta.lookup(name)
  }

  /** [offset, offset + length) of a file (clamped to its size; the rest of it by default). */
  readFile(name: string, offset = 0, length?: number, signal?: AbortSignal): Promise<Buffer> {
    return this.chunks.read(name, offset, length ?? Number.MAX_SAFE_INTEGER - offset, signal)
  }

  verifyAll(opts: VerifyOptions = {}): Promise<VerifyReport> {
    return verifyBlob(this.chunks, opts)
  }

  /** Waits for work in flight and releases the TOC's budget. The source is the caller's. */
  close(): Promise<void> {
    return this.chunks.close()
  }
}
