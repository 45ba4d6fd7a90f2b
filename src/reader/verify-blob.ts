import type { ChunkRef } from '../estargz/toc-index.js'
import type { ChunkReader } from './chunk-reader.js'

export interface VerifyReport {
  files: number
  chunks: number
  bytes: number
  /** Chunks with no digest of their own and no file digest to check them against. */
  unverified: number
}

export interface VerifyOptions {
  /** Batches loaded at once. Default 4. */
  concurrency?: number
  /** Compressed bytes per batch. Default 8 MiB. */
  batchBytes?: number
  signal?: AbortSignal
}

/**
 * Fetch every payload of a blob through the reader (the same path a mount reads through) and
 * check every chunk against its digest, or a legacy file against its whole-file digest. Throws
 * the first failure once the batches in flight settle.
 */
export async function verifyBlob(reader: ChunkReader, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const report: VerifyReport = { files: 0, chunks: 0, bytes: 0, unverified: 0 }
  const index = reader.index
  const batches: ChunkRef[][] = []
  let cur: ChunkRef[] = []
  let curBytes = 0
  const batchBytes = opts.batchBytes ?? 8 * 1024 * 1024
  for (const e of index.regularFiles()) {
    const refs = index.chunks(e.name)
    if (refs.length === 0) continue
    if (refs.some((r) => r.digest === undefined)) {
      if (e.digest === undefined) { report.unverified += refs.length; continue }
      await reader.verifyFile(e)
      report.files++
      report.chunks += refs.length
      report.bytes += e.size ?? 0
      continue
    }
    report.files++
    for (const r of refs) {
      if (cur.length > 0 && curBytes + (r.compressedEnd - r.compressedOffset) > batchBytes) { batches.push(cur); cur = []; curBytes = 0 }
      cur.push(r)
      curBytes += r.compressedEnd - r.compressedOffset
    }
  }
  if (cur.length > 0) batches.push(cur)
  let next = 0
  const work = async (): Promise<void> => {
    while (next < batches.length) {
      const b = batches[next++] as ChunkRef[]
      const o: Parameters<ChunkReader['loadChunks']>[1] = { mode: 'demand' }
      if (opts.signal !== undefined) o.signal = opts.signal
      await reader.loadChunks(b, o)
      for (const r of b) { report.chunks++; report.bytes += r.chunkSize }
    }
  }
  const results = await Promise.allSettled(Array.from({ length: Math.min(opts.concurrency ?? 4, batches.length) }, work))
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason
  return report
}
