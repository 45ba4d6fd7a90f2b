/**
 * Where a layer's gzip index lives in a registry, without the referrers API (docker-registry 2.8
 * has none): in the image's own repository, under the tag `sha256-<layer hex>.gzindex`, an OCI
 * image manifest whose one layer is the index blob. The manifest's `subject` names the image
 * manifest it was made for (registries with the referrers API list it there; 2.8 keeps it as
 * bytes), but lookups go by layer digest: that is all the snapshotter knows, and it is what
 * survives `skopeo copy` and re-tagging. Integrity: the tag is mutable, so the index blob is
 * fetched by the digest the manifest names and verified; the decoded index must name the layer
 * (digest and size) it is used for; every span is verified on read.
 */
import { NotFoundError } from '../errors.js'
import type { RegistryClient } from '../registry/client.js'
import type { Descriptor } from '../registry/manifest.js'
import { sha256Digest } from '../registry/manifest.js'
import { OCI_EMPTY, OCI_MANIFEST } from '../registry/media-types.js'
import { parseReference, type Reference } from '../registry/reference.js'
import { gzIndexError } from './errors.js'
import { decodeIndex, type GzIndex } from './format.js'

export const GZINDEX_ARTIFACT_TYPE = 'application/vnd.stargzd.gzindex.v1'
export const GZINDEX_MEDIA_TYPE = 'application/vnd.stargzd.gzindex.v1+gzip'
export const GZINDEX_LAYER_ANNOTATION = 'dev.stargzd.gzindex.layer.digest'
/** An index blob larger than this is refused before it is fetched. */
export const MAX_INDEX_BLOB = 256 << 20

export function indexTag(layerDigest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(layerDigest)
  if (!m) throw gzIndexError(`layer digest ${JSON.stringify(layerDigest)} is not sha256`)
  return `sha256-${m[1]}.gzindex`
}

function repoRef(ref: Reference, tag: string): Reference {
  return { ...parseReference(`${ref.registry}/${ref.repository}:${tag}`) }
}

export interface PushedIndex { tag: string; manifestDigest: string; blobDigest: string; blobSize: number }

export async function pushIndex(client: RegistryClient, ref: Reference, layer: Descriptor, blob: Buffer, subject?: Descriptor): Promise<PushedIndex> {
  const empty = Buffer.from('{}')
  await client.pushBlob(ref, empty)
  await client.pushBlob(ref, blob)
  const blobDigest = sha256Digest(blob)
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: GZINDEX_ARTIFACT_TYPE,
    config: { mediaType: OCI_EMPTY, digest: sha256Digest(empty), size: empty.length },
    layers: [{ mediaType: GZINDEX_MEDIA_TYPE, digest: blobDigest, size: blob.length, annotations: { [GZINDEX_LAYER_ANNOTATION]: layer.digest } }],
    annotations: { [GZINDEX_LAYER_ANNOTATION]: layer.digest },
  }
  if (subject) manifest.subject = { mediaType: subject.mediaType, digest: subject.digest, size: subject.size }
  const tag = indexTag(layer.digest)
  const manifestDigest = await client.pushManifest(repoRef(ref, tag), Buffer.from(JSON.stringify(manifest)), OCI_MANIFEST)
  return { tag, manifestDigest, blobDigest, blobSize: blob.length }
}

/** Looks up the verified index of a layer (bound to one image's repository); undefined when none. */
export type GzIndexFinder = (layerDigest: string, signal?: AbortSignal) => Promise<FoundIndex | undefined>

export interface FoundIndex { index: GzIndex; blobDigest: string }

/** The finder for layers of `ref` (the daemon and `stargz mount` pass it to the resolver). */
export function indexFinder(client: RegistryClient, ref: string | Reference): GzIndexFinder {
  const r = typeof ref === 'string' ? parseReference(ref) : ref
  return (digest, signal) => findIndex(client, r, { digest }, signal)
}

/**
 * The verified index of `layer` in ref's repository, or undefined when none is published. Without
 * `layer.size` the caller checks the size once it knows it (checkIndexFor).
 */
export async function findIndex(client: RegistryClient, ref: Reference, layer: { digest: string; size?: number }, signal?: AbortSignal): Promise<FoundIndex | undefined> {
  const found = await findIndexBlob(client, ref, layer, signal)
  return found === undefined ? undefined : { index: found.index, blobDigest: found.blobDigest }
}

/** findIndex, keeping the blob's bytes too (copying an index to another repository). */
export async function findIndexBlob(client: RegistryClient, ref: Reference, layer: { digest: string; size?: number }, signal?: AbortSignal): Promise<(FoundIndex & { blob: Buffer }) | undefined> {
  let fetched
  try {
    fetched = await client.fetchManifest(repoRef(ref, indexTag(layer.digest)), signal)
  } catch (e) {
    if (e instanceof NotFoundError) return undefined
    throw e
  }
  if (fetched.parsed.kind !== 'manifest') throw gzIndexError(`${indexTag(layer.digest)} is an index, not an index artifact manifest`)
  const l = fetched.parsed.manifest.layers.find((d) => d.mediaType === GZINDEX_MEDIA_TYPE)
  if (!l) throw gzIndexError(`${indexTag(layer.digest)} has no ${GZINDEX_MEDIA_TYPE} layer`)
  if (l.size > MAX_INDEX_BLOB) throw gzIndexError(`index blob of ${l.size} bytes exceeds ${MAX_INDEX_BLOB}`)
  // fetchBlob checks the bytes against l.digest.
  const blob = await client.fetchBlob(ref, l.digest, l.size, signal)
  return { index: decodeIndex(blob, layer), blobDigest: l.digest, blob }
}
