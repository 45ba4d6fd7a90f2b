import { emptyStats, type ChunkCache } from '../cache/types.js'

/**
 * A cache that keeps nothing: the CLI reads a blob once (cat, verify) and needs no store. Every
 * read still goes through the same ChunkReader path as a mount.
 */
export const noCache: ChunkCache = {
  get: () => Promise.resolve(undefined),
  put: () => Promise.resolve(),
  delete: () => Promise.resolve(),
  stats: () => emptyStats(0),
  close: () => Promise.resolve(),
}
