/**
 * THE place where the daemon picks its FileSystem for remote snapshots: lazy FUSE mounts of
 * eStargz layers (src/fs/lazy-filesystem.ts), configured from the config file. If FUSE cannot
 * work on this host (/dev/fuse missing), every layer falls back to a normal snapshot that
 * containerd downloads and unpacks (correct, just not lazy) and the daemon says so at start.
 */
import { defaultMetadataBudget } from '../src/estargz/metadata-budget.js'
import { access, constants } from 'node:fs/promises'
import { join } from 'node:path'
import { openChunkCache } from '../src/cache/chunk-cache.js'
import type { Config } from '../src/config/schema.js'
import { UnavailableError } from '../src/errors.js'
import { LazyFileSystem } from '../src/fs/lazy-filesystem.js'
import { LayerStore } from '../src/layer/layer-store.js'
import type { Logger } from '../src/log/logger.js'
import type { MetricsHooks } from '../src/metrics/hooks.js'
import { RegistryClient } from '../src/registry/client.js'
import type { CredentialProvider } from '../src/registry/credentials.js'
import type { FileSystem, RemoteLayerInfo } from '../src/snapshot/filesystem.js'
import type { MountBackend } from '../src/fuse/layer-fs.js'

export interface FileSystemHandle {
  fs: FileSystem
  /** Release what the filesystem owns beyond its mounts (caches, workers); after unmounts. */
  close(): Promise<void>
  /** False while lazy pulling is not available (the daemon logs it once at start). */
  lazy: boolean
}

export class UnavailableFileSystem implements FileSystem {
  constructor(private readonly why: string) {}
  async mount(mountpoint: string, layer: RemoteLayerInfo): Promise<void> {
    throw new UnavailableError(`lazy mounts are not available: ${this.why} (layer ${layer.layerDigest} at ${mountpoint})`)
  }
  async check(mountpoint: string): Promise<void> {
    throw new UnavailableError(`lazy mounts are not available: ${this.why} (${mountpoint})`)
  }
  async unmount(): Promise<void> {
    // nothing is ever mounted
  }
}

/** `credentials`: where registry credentials come from (default: the Docker config). */
/** `mountBackend`: who serves FUSE (default fuse-native; stargz-fused passes src/fuseproto's). */
export async function createFileSystem(cfg: Readonly<Config>, log: Logger, metrics: MetricsHooks, credentials?: CredentialProvider, mountBackend?: MountBackend): Promise<FileSystemHandle> {
  try {
    await access('/dev/fuse', constants.R_OK | constants.W_OK)
  } catch {
    return { fs: new UnavailableFileSystem('/dev/fuse is not usable'), close: async () => undefined, lazy: false }
  }
  const client = new RegistryClient({
    hostsDir: cfg.hosts_dir,
    plainHttpLocalhost: true,
    ...(credentials ? { credentials } : {}),
    transport: {
      maxRetries: cfg.blob.max_retries,
      backoffBaseMs: cfg.blob.min_wait_msec,
      backoffMaxMs: cfg.blob.max_wait_msec,
      // A stalled body is cut at a third of the deadline, leaving time to retry it (issue #17).
      bodyTimeoutMs: Math.ceil((cfg.blob.fetching_timeout_sec * 1000) / 3),
      // The reference's fetching_timeout_sec bounds a whole fetch, not only the gaps in its body.
      requestDeadlineMs: cfg.blob.fetching_timeout_sec * 1000,
    },
    blob: cfg.blob.force_single_range_mode ? { maxRangesPerRequest: 1 } : {},
  })
  const cacheDir = cfg.cache.dir === '' ? join(cfg.root, 'cache') : cfg.cache.dir
  // Owned by the filesystem from here on (its resolver closes it after the last layer).
  const cache = await openChunkCache(cacheDir, { diskBytes: cfg.cache.max_size_mb * 1024 * 1024, observer: metrics })
  // Every layer's index is accounted in the process-wide metadata budget (src/estargz/metadata-budget.ts).
  defaultMetadataBudget.setMaxBytes(cfg.metadata_budget_mb * 1024 * 1024)
  // Beside the cache, under the daemon root: what each layer needs to be served again after a
  // restart without the registry (src/layer/layer-store.ts). Owned by the filesystem's resolver.
  const layerStore = await LayerStore.open(join(cfg.root, 'layers'), log)
  const fs = new LazyFileSystem({
    layerStore,
    client,
    cache,
    log,
    metrics,
    noPrefetch: cfg.noprefetch,
    prefetchTimeoutSec: cfg.prefetch_timeout_sec,
    noBackgroundFetch: cfg.no_background_fetch,
    backgroundConcurrency: cfg.max_concurrency,
    backgroundUnitBytes: Math.max(cfg.blob.chunk_size, 1 << 20),
    requireTocDigest: !cfg.disable_verification,
    allowUnverified: cfg.disable_verification,
    attrTimeoutSec: cfg.fuse.attr_timeout,
    entryTimeoutSec: cfg.fuse.entry_timeout,
    checkIntervalMs: cfg.blob.check_always ? 0 : cfg.blob.valid_interval * 1000,
    layerTtlMs: cfg.resolve_result_entry_ttl_sec * 1000,
    indexDir: join(cfg.root, 'index'),
    maxIndexBytes: cfg.metadata_layer_budget_mb * 1024 * 1024,
    ...(mountBackend === undefined ? {} : { mountBackend }),
  })
  let closed = false
  return {
    fs,
    lazy: true,
    close: async () => {
      if (closed) return
      closed = true
      await fs.close() // mounts, then layers, blobs, decode pool, chunk cache
      await client.close()
    },
  }
}
