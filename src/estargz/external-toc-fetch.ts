/**
 * Finds the TOC of an external-TOC layer the way the reference does (nativeconverter/estargz/
 * externaltoc/fetcher.go): resolve the image `<image ref>-esgztoc` (same repository, the tag with
 * "-esgztoc" appended), take the layer whose `containerd.io/snapshot/stargz/layer.digest`
 * annotation is the eStargz layer's digest, and fetch it whole (digest-verified by the client).
 * The TOC digest is then checked against the layer's toc.digest annotation by loadToc as usual.
 *
 * Takes the registry client as a structural type so estargz/ does not depend on registry/.
 */
import { NotFoundError } from '../errors.js'
import { EXTERNAL_TOC_LAYER_DIGEST_ANNOTATION, EXTERNAL_TOC_REF_SUFFIX } from './external-toc.js'

export interface TocImageClient {
  resolve(ref: string, opts?: { signal?: AbortSignal }): Promise<{ layers: ReadonlyArray<{ digest: string; size: number; annotations?: Record<string, string> | undefined }> }>
  fetchBlob(ref: string, digest: string, size?: number, signal?: AbortSignal): Promise<Buffer>
}

/** "host/repo:tag[@digest]" → "host/repo:tag-esgztoc"; a reference without a tag has no TOC image. */
export function externalTocRef(imageRef: string): string {
  const noDigest = imageRef.replace(/@sha256:[0-9a-f]{64}$/, '')
  const slash = noDigest.lastIndexOf('/')
  const colon = noDigest.lastIndexOf(':')
  if (colon <= slash) throw new NotFoundError(`image reference ${JSON.stringify(imageRef)} has no tag, so it has no "<tag>${EXTERNAL_TOC_REF_SUFFIX}" TOC image`)
  return noDigest + EXTERNAL_TOC_REF_SUFFIX
}

export async function fetchExternalToc(client: TocImageClient, imageRef: string, layerDigest: string, signal?: AbortSignal): Promise<Buffer> {
  const tocRef = externalTocRef(imageRef)
  const img = await client.resolve(tocRef, signal ? { signal } : {})
  const layer = img.layers.find((l) => l.annotations?.[EXTERNAL_TOC_LAYER_DIGEST_ANNOTATION] === layerDigest)
  if (!layer) throw new NotFoundError(`TOC image ${tocRef} has no layer annotated ${EXTERNAL_TOC_LAYER_DIGEST_ANNOTATION}=${layerDigest}`)
  return client.fetchBlob(tocRef, layer.digest, layer.size, signal)
}
