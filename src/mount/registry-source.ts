/**
 * The registry side of `stargz mount`: RegistryClient as an ImageSource. Layers are resolved by a
 * LayerResolver (src/layer/resolver.ts) over a chunk cache from src/cache/chunk-cache.ts.
 */
import type { RegistryClient } from '../registry/client.js'
import type { ImageSource } from './image-mount.js'

export function registryImageSource(client: RegistryClient, platform?: string): ImageSource {
  return {
    async resolveLayers(ref, signal) {
      const img = await client.resolve(ref, { ...(platform === undefined ? {} : { platform }), ...(signal ? { signal } : {}) })
      return { name: img.name, layers: img.layers }
    },
    blob: (ref, desc) => client.blob(ref, desc.digest, desc.size),
  }
}
