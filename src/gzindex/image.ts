/**
 * Index a whole image, or carry an image's indexes over to a copy of it (`stargz index`, and the
 * benchmark's gzindex mode). Each gzip layer is read once from the registry, front to back; the
 * streamed bytes must hash to the layer digest, which is what binds the index to the layer.
 *
 * A copy (`skopeo copy`, re-tagging into another repository) keeps the layer digests but not the
 * index artifacts, which live beside the image as tags: copyIndexes() pushes the source's verified
 * indexes into the destination repository, re-pointing `subject` at the destination manifest,
 * without re-reading any layer.
 */
import { InvalidArgumentError } from '../errors.js'
import type { RegistryClient, ResolvedImage } from '../registry/client.js'
import type { Descriptor } from '../registry/manifest.js'
import { isGzipLayer } from '../registry/media-types.js'
import { parseReference, type Reference } from '../registry/reference.js'
import { findIndexBlob, pushIndex, type PushedIndex } from './artifact.js'
import { buildIndex, DEFAULT_SPACING } from './build.js'
import { rangeStream } from './source-stream.js'

export interface IndexedLayer {
  layer: Descriptor
  spans: number
  files: number
  indexBytes: number
  /** Seconds to read, scan and hash the layer. */
  seconds: number
  uncompressedBytes: number
  pushed?: PushedIndex
}

export interface IndexImageOptions {
  spacing?: number
  /** Build but do not push (default: push). */
  noPush?: boolean
  log?: (line: string) => void
}

async function subjectOf(client: RegistryClient, ref: Reference, image: ResolvedImage): Promise<Descriptor> {
  const fetched = await client.fetchManifest({ ...ref, tag: undefined, digest: image.digest })
  return { mediaType: image.mediaType, digest: image.digest, size: fetched.bytes.length }
}

/** Index every gzip layer of `ref` and (unless noPush) push each index next to the image. */
export async function indexImage(client: RegistryClient, refIn: string | Reference, o: IndexImageOptions = {}): Promise<IndexedLayer[]> {
  const ref = typeof refIn === 'string' ? parseReference(refIn) : refIn
  const image = await client.resolve(ref)
  const subject = await subjectOf(client, ref, image)
  const out: IndexedLayer[] = []
  for (const layer of image.layers) {
    if (!isGzipLayer(layer.mediaType)) {
      o.log?.(`layer ${layer.digest} is ${layer.mediaType}, not gzip: skipped`)
      continue
    }
    const blob = await client.blob(ref, layer.digest, layer.size)
    try {
      const t0 = performance.now()
      const built = await buildIndex(rangeStream(blob), { layer: { digest: layer.digest, size: layer.size }, spacing: o.spacing ?? DEFAULT_SPACING })
      // The layer was read whole: its digest binds the index to the bytes it describes.
      if (`sha256:${built.inputSha256}` !== layer.digest) throw new InvalidArgumentError(`layer ${layer.digest}: its bytes hash to sha256:${built.inputSha256}`)
      const r: IndexedLayer = {
        layer, spans: built.header.spans.length, files: built.header.files.length, indexBytes: built.blob.length,
        seconds: (performance.now() - t0) / 1000, uncompressedBytes: built.header.uncompressedSize,
      }
      if (!o.noPush) r.pushed = await pushIndex(client, ref, layer, built.blob, subject)
      out.push(r)
    } finally {
      await blob.close()
    }
  }
  if (out.length === 0) throw new InvalidArgumentError(`${refIn} has no gzip layers to index`)
  return out
}

/**
 * Push the indexes published for `src`'s layers into `dst`'s repository (dst: a copy of src, same
 * layer digests). Each index blob is fetched by digest and decoded (checked) before it is pushed;
 * a layer of dst without an index at src is reported, not an error.
 */
export async function copyIndexes(client: RegistryClient, srcIn: string | Reference, dstIn: string | Reference, log?: (line: string) => void): Promise<PushedIndex[]> {
  const src = typeof srcIn === 'string' ? parseReference(srcIn) : srcIn
  const dst = typeof dstIn === 'string' ? parseReference(dstIn) : dstIn
  const image = await client.resolve(dst)
  const subject = await subjectOf(client, dst, image)
  const out: PushedIndex[] = []
  for (const layer of image.layers) {
    if (!isGzipLayer(layer.mediaType)) continue
    const found = await findIndexBlob(client, src, layer)
    if (found === undefined) { log?.(`layer ${layer.digest}: no index at ${src.registry}/${src.repository}`); continue }
    out.push(await pushIndex(client, dst, layer, found.blob, subject))
  }
  if (out.length === 0) throw new InvalidArgumentError(`no gzip index of ${dstIn}'s layers is published at ${srcIn}`)
  return out
}
