/**
 * The documents of a converted image: config with new `rootfs.diff_ids`, manifest with new
 * layer descriptors, index over the new manifests. Pure functions of their inputs, so the same
 * conversion always yields the same digests.
 *
 * Media types follow the source (Docker stays Docker, OCI stays OCI) unless a format is forced.
 * Everything else in the documents is kept: config history, env and labels; manifest and index
 * annotations; descriptor annotations and platforms.
 */
import { ManifestError } from '../registry/errors.js'
import type { Descriptor } from '../registry/manifest.js'
import {
  DOCKER_CONFIG, DOCKER_LAYER_FOREIGN_GZIP, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
  OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_NONDIST_GZIP, OCI_MANIFEST,
} from '../registry/media-types.js'

export type ImageFormat = 'docker' | 'oci'

export function formatOfManifest(mediaType: string): ImageFormat {
  return mediaType === DOCKER_MANIFEST || mediaType === DOCKER_MANIFEST_LIST ? 'docker' : 'oci'
}

export function manifestMediaType(f: ImageFormat): string { return f === 'docker' ? DOCKER_MANIFEST : OCI_MANIFEST }
export function indexMediaType(f: ImageFormat): string { return f === 'docker' ? DOCKER_MANIFEST_LIST : OCI_INDEX }
export function configMediaType(f: ImageFormat): string { return f === 'docker' ? DOCKER_CONFIG : OCI_CONFIG }
export function gzipLayerMediaType(f: ImageFormat): string { return f === 'docker' ? DOCKER_LAYER_GZIP : OCI_LAYER_GZIP }

/** Layers that must not be copied or converted (their blobs live at `urls`, not in registries). */
export function isForeignLayer(d: Descriptor): boolean {
  return d.mediaType === DOCKER_LAYER_FOREIGN_GZIP || d.mediaType === OCI_LAYER_NONDIST_GZIP || d.mediaType.startsWith('application/vnd.oci.image.layer.nondistributable.')
}

/** Image configs we know how to rewrite; anything else in an index (attestations, artifacts) is not an image. */
export function isImageConfig(mediaType: string): boolean {
  return mediaType === DOCKER_CONFIG || mediaType === OCI_CONFIG
}

/** The config with `rootfs.diff_ids` replaced; every other field as it was, in its order. */
export function rewriteConfig(config: Buffer, diffIDs: string[], where: string): Buffer {
  let j: unknown
  try { j = JSON.parse(config.toString('utf8')) } catch (e) {
    throw new ManifestError(`${where}: image config is not JSON: ${(e as Error).message}`, {}, { cause: e })
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new ManifestError(`${where}: image config is not a JSON object`, {})
  const cfg = j as Record<string, unknown>
  const rootfs = cfg.rootfs as { type?: unknown; diff_ids?: unknown } | undefined
  if (!rootfs || !Array.isArray(rootfs.diff_ids)) throw new ManifestError(`${where}: image config has no rootfs.diff_ids`, {})
  if (rootfs.diff_ids.length !== diffIDs.length) {
    throw new ManifestError(`${where}: config lists ${rootfs.diff_ids.length} diff_ids but the manifest has ${diffIDs.length} layers`, {})
  }
  cfg.rootfs = { ...rootfs, diff_ids: diffIDs }
  return Buffer.from(JSON.stringify(cfg))
}

/** A manifest over the new config and layers; other top-level fields are kept. */
export function rewriteManifest(original: Buffer, format: ImageFormat, config: Descriptor, layers: Descriptor[]): { bytes: Buffer; mediaType: string } {
  const orig = JSON.parse(original.toString('utf8')) as Record<string, unknown>
  const mediaType = manifestMediaType(format)
  const doc: Record<string, unknown> = { schemaVersion: 2, mediaType, config: { ...config, mediaType: configMediaType(format) }, layers }
  for (const [k, v] of Object.entries(orig)) {
    if (k in doc) continue
    // Docker schema 2 has no subject or artifactType; drop them rather than write an invalid manifest.
    if (format === 'docker' && (k === 'subject' || k === 'artifactType')) continue
    doc[k] = v
  }
  return { bytes: Buffer.from(JSON.stringify(doc)), mediaType }
}

/** An index over the new manifests; the original's annotations are kept. */
export function rewriteIndex(original: Buffer, format: ImageFormat, manifests: Descriptor[]): { bytes: Buffer; mediaType: string } {
  const orig = JSON.parse(original.toString('utf8')) as Record<string, unknown>
  const mediaType = indexMediaType(format)
  const doc: Record<string, unknown> = { schemaVersion: 2, mediaType, manifests }
  for (const [k, v] of Object.entries(orig)) {
    if (k in doc) continue
    if (format === 'docker' && k !== 'annotations') continue
    doc[k] = v
  }
  return { bytes: Buffer.from(JSON.stringify(doc)), mediaType }
}
