/**
 * The TOC image of an external-TOC conversion, as the reference's converter writes it
 * (nativeconverter/estargz/externaltoc): one OCI manifest, an empty config, and one gzip "layer"
 * per converted layer — its TOC blob — annotated `containerd.io/snapshot/stargz/layer.digest` with
 * the eStargz layer's digest, sorted by digest. It is tagged `<tag>-esgztoc` beside the image.
 */
import { createHash } from 'node:crypto'
import { InvalidArgumentError } from '../errors.js'
import { EXTERNAL_TOC_LAYER_DIGEST_ANNOTATION, EXTERNAL_TOC_REF_SUFFIX } from '../estargz/external-toc.js'
import type { ImageOutput } from './image-io.js'
import type { ImageLocation } from './location.js'
import type { ConvertSummary } from './convert-image.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
const OCI_GZIP_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'

/** Where the TOC image of `dst` goes: the same repository or layout, tag + "-esgztoc". */
export function tocImageLocation(dst: ImageLocation): ImageLocation {
  if (dst.kind === 'oci') {
    const tag = (dst.tag ?? 'latest') + EXTERNAL_TOC_REF_SUFFIX
    return { ...dst, tag, text: `oci:${dst.dir}:${tag}` }
  }
  const tag = (dst.ref.tag ?? 'latest') + EXTERNAL_TOC_REF_SUFFIX
  if (tag.length > 128) throw new InvalidArgumentError(`destination tag ${JSON.stringify(dst.ref.tag)} is too long for a "${EXTERNAL_TOC_REF_SUFFIX}" TOC image tag`)
  const ref = { ...dst.ref, tag }
  return { kind: 'registry', ref, text: `${ref.registry}/${ref.repository}:${tag}` }
}

/** Writes the TOC image's config and manifest; the TOC blobs are already in `output`'s store. */
export async function writeTocImage(output: ImageOutput, summary: ConvertSummary): Promise<{ digest: string; layers: number }> {
  const seen = new Map<string, { mediaType: string; digest: string; size: number; annotations: Record<string, string> }>()
  for (const img of summary.images) {
    for (const l of img.layers) {
      if (l.externalToc) seen.set(l.digest, { mediaType: OCI_GZIP_LAYER, digest: l.externalToc.digest, size: l.externalToc.size, annotations: { [EXTERNAL_TOC_LAYER_DIGEST_ANNOTATION]: l.digest } })
    }
  }
  const layers = [...seen.values()].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0))
  const config = Buffer.from('{}')
  const configDigest = 'sha256:' + createHash('sha256').update(config).digest('hex')
  await output.putBlobBytes({ mediaType: OCI_CONFIG, digest: configDigest, size: config.length }, config)
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length }, layers }))
  await output.putManifest(manifest, OCI_MANIFEST, true)
  return { digest: 'sha256:' + createHash('sha256').update(manifest).digest('hex'), layers: layers.length }
}
