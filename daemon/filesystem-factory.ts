/**
 * THE place where the daemon picks its FileSystem for remote snapshots. Until the FUSE/layer
 * FileSystem exists, every mount is refused with UnavailableError, so each layer falls back to a
 * normal snapshot that containerd downloads and unpacks (correct, just not lazy).
 *
 * To wire the real one: construct it here from `cfg` (hosts_dir, cache, blob, fuse, prefetch
 * keys), `log` and `metrics`, and return it instead of `new UnavailableFileSystem(...)`.
 */
import type { Config } from '../src/config/schema.js'
import { UnavailableError } from '../src/errors.js'
import type { Logger } from '../src/log/logger.js'
import type { MetricsHooks } from '../src/metrics/hooks.js'
import type { FileSystem, RemoteLayerInfo } from '../src/snapshot/filesystem.js'

export interface FileSystemHandle {
  fs: FileSystem
  /** Release what the filesystem owns beyond its mounts (caches, workers); after unmounts. */
  close(): Promise<void>
  /** False while lazy pulling is not available (the daemon logs it once at start). */
  lazy: boolean
}

export class UnavailableFileSystem implements FileSystem {
  async mount(mountpoint: string, layer: RemoteLayerInfo): Promise<void> {
    throw new UnavailableError(`lazy mounts are not available in this build (layer ${layer.layerDigest} at ${mountpoint})`)
  }
  async check(mountpoint: string): Promise<void> {
    throw new UnavailableError(`lazy mounts are not available in this build (${mountpoint})`)
  }
  async unmount(): Promise<void> {
    // nothing is ever mounted
  }
}

export async function createFileSystem(_cfg: Readonly<Config>, _log: Logger, _metrics: MetricsHooks): Promise<FileSystemHandle> {
  return { fs: new UnavailableFileSystem(), close: async () => undefined, lazy: false }
}
