/** Types of the chunk reader's public surface: options, hooks, counters. */
import type { ChunkCache } from '../cache/types.js'
import type { ChunkDecoder } from '../estargz/chunk-decoder.js'
import type { IndexedBlob } from '../estargz/reader.js'
import type { ChunkRef } from '../estargz/toc-index.js'
import type { RangeSource } from '../estargz/types.js'
import type { ChunkFetchError, ChunkVerifyError } from './errors.js'
import type { Logger } from './logger.js'
import type { PriorityChunkDecoder } from './worker-decoder.js'

export interface ByteRange { offset: number; length: number }

/** A RangeSource that can also fetch several ranges in one request (the registry blob). */
export interface MultiRangeSource extends RangeSource {
  readRanges?(ranges: readonly ByteRange[], signal?: AbortSignal): Promise<Buffer[]>
}

export interface FetchEvent {
  offset: number
  length: number
  /** Ranges in the request (more than one only for a multi-range request). */
  ranges: number
  chunks: number
  mode: LoadMode
  durationMs: number
  ok: boolean
}

/** Metrics and bookkeeping hooks; all optional, all called synchronously. */
export interface ReaderHooks {
  onFetch?(ev: FetchEvent): void
  onCacheHit?(ev: { key: string; bytes: number }): void
  onCacheMiss?(ev: { key: string }): void
  /** A chunk's verified bytes are available locally (fetched from this blob, or cached). */
  onChunkReady?(ref: ChunkRef, via: 'fetch' | 'cache'): void
  /** Every chunk in this fetched blob range verified. */
  onSpanVerified?(offset: number, length: number): void
  onError?(err: ChunkFetchError | ChunkVerifyError): void
}

export interface ReaderCounters {
  /** Bytes received from the source. */
  bytesFetched: number
  /** Requests made to the source (a multi-range request counts once). */
  fetchRequests: number
  /** Chunk lookups answered by the cache. */
  cacheHits: number
  /** Chunk lookups the cache could not answer (each led to a fetch). */
  cacheMisses: number
  /** Chunk loads that joined a load already in flight. */
  deduplicated: number
  chunksDecoded: number
  verifyFailures: number
  fetchFailures: number
}

/**
 * 'demand': an on-demand read (high decode priority, chunks go to every cache tier).
 * 'prefetch': the landmark range at mount (high priority; may be cut short by its timeout, so
 *   on-demand readers that joined it fetch for themselves if it fails).
 * 'background': prefetch-the-rest (low priority, kept out of the memory tier, may be preempted).
 */
export type LoadMode = 'demand' | 'prefetch' | 'background'

export interface LoadOptions {
  mode?: LoadMode
  /** Aborts the source fetch (prefetch/background); on-demand reads only stop waiting. */
  signal?: AbortSignal
  /** Fetch the missing chunks with exactly this one range (prefetch: [0, landmark)). */
  span?: ByteRange
}

export interface ChunkReaderOptions {
  reader: IndexedBlob
  /** Where chunk bytes come from. Default: the reader's source. */
  source?: MultiRangeSource
  /** Default: none (the CLI reading a blob once). */
  cache?: ChunkCache
  /** Default: one WorkerChunkDecoder shared by the whole process. */
  decoder?: ChunkDecoder | PriorityChunkDecoder
  /** See SpanPlanOptions. Default 256 KiB. */
  mergeGapBytes?: number
  /** Default 32 MiB. */
  maxSpanBytes?: number
  /**
   * Chunks bigger than this (uncompressed) are never held whole: streamed into the disk cache
   * and served by range, or streamed per read keeping only the window. Default 16 MiB.
   */
  maxChunkInMemoryBytes?: number
  /** Range request size when streaming a big member. Default 4 MiB. */
  streamPieceBytes?: number
  /**
   * When a read starts where the previous read of the same file ended, start loading this many
   * bytes beyond it. FUSE hands us ≤ 128 KiB reads and kernel read-ahead stays inside one chunk,
   * so without this a sequential reader waits for one chunk at a time and one decode worker
   * idles. Default 4 MiB; 0 disables.
   */
  readaheadBytes?: number
  /**
   * Serve chunks that have no digest and no file digest to check them against. Default: the
   * EstargzReader's allowUnverified (false).
   */
  allowUnverified?: boolean
  hooks?: ReaderHooks | readonly ReaderHooks[]
  logger?: Logger
  /**
   * Told when an on-demand read has to wait (for the back cache tier or a fetch); reads served
   * from memory do not count, so a warm workload does not starve background fetching.
   */
  gate?: { beginPriority(): () => void }
}
