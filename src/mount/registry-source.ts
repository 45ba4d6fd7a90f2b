/**
 * The registry side of `stargz mount`: RegistryClient as an ImageSource, and a LayerOpener over
 * src/layer's openLayer with a chunk cache (memory, plus a directory when --cache-dir is given).
 */
import type { Logger } from 'pino'
import { DirCache } from '../cache/dir-cache.js'
import { MemoryCache } from '../cache/memory-cache.js'
import { TieredCache } from '../cache/tiered-cache.js'
import type { ChunkCache } from '../cache/types.js'
import { openLayer } from '../layer/layer.js'
import { fetchExternalToc, type TocImageClient } from '../estargz/external-toc-fetch.js'
import type { RegistryClient } from '../registry/client.js'
import type { MultiRangeSource } from '../reader/chunk-reader.js'
import { TOC_DIGEST_ANNOTATION, type ImageSource, type LayerDescriptor, type LayerOpener } from './image-mount.js'

export function registryImageSource(client: RegistryClient, platform?: string): ImageSource {
  return {
    async resolveLayers(ref, signal) {
      const img = await client.resolve(ref, { ...(platform === undefined ? {} : { platform }), ...(signal ? { signal } : {}) })
      return { name: img.name, layers: img.layers }
    },
    blob: (ref, desc) => client.blob(ref, desc.digest, desc.size),
  }
}

export async function openChunkCache(cacheDir: string | undefined, opts: { memoryBytes?: number; diskBytes?: number } = {}): Promise<ChunkCache> {
  const mem = new MemoryCache({ maxBytes: opts.memoryBytes ?? 256 << 20 })
  if (cacheDir === undefined) return mem
  return new TieredCache(mem, await DirCache.open({ root: cacheDir, maxBytes: opts.diskBytes ?? 10 * 2 ** 30 }))
}

/** `tocImages`: where to find external TOCs (the `<tag>-esgztoc` image), when a layer has one. */
export function stargzLayerOpener(cache: ChunkCache, logger: Logger, fetch: { noPrefetch?: boolean; noBackgroundFetch?: boolean } = {}, tocImages?: TocImageClient): LayerOpener {
  return (source, desc: LayerDescriptor, ref: string) => {
    const tocDigest = desc.annotations?.[TOC_DIGEST_ANNOTATION]
    return openLayer({
      digest: desc.digest, source: source as MultiRangeSource, cache, logger, ...fetch, ...(tocDigest === undefined ? {} : { tocDigest }),
      ...(tocImages ? { externalToc: () => fetchExternalToc(tocImages, ref, desc.digest) } : {}),
    })
  }
}
