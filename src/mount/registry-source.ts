/**
 * The registry side of `stargz mount`: RegistryClient as an ImageSource. Layers are resolved by a
 * LayerResolver (src/layer/resolver.ts) over a chunk cache from src/cache/chunk-cache.ts.
 */
import { fetchExternalToc, type TocImageClient } from '../estargz/external-toc-fetch.js'
import type { ExternalTocSource } from '../estargz/external-toc.js'
import type { RegistryClient } from '../registry/client.js'
import type { ImageSource, LayerDescriptor } from './image-mount.js'

export function registryImageSource(client: RegistryClient, platform?: string): ImageSource {
  return {
    async resolveLayers(ref, signal) {
      const img = await client.resolve(ref, { ...(platform === undefined ? {} : { platform }), ...(signal ? { signal } : {}) })
      return { name: img.name, layers: img.layers }
    },
    blob: (ref, desc) => client.blob(ref, desc.digest, desc.size),
  }
}

/** External TOCs (the reference's `<tag>-esgztoc` image) of an image's layers, from `client`. */
export function registryExternalToc(client: TocImageClient): (ref: string, desc: LayerDescriptor) => ExternalTocSource {
  return (ref, desc) => () => fetchExternalToc(client, ref, desc.digest)
}
