/**
 * One layer of a conversion: leave a foreign layer alone, keep an eStargz layer as it is, or
 * convert (through the cache).
 */
import { FooterError } from '../errors.js'
import { parseFooter } from '../estargz/footer.js'
import { FOOTER_SIZE, TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION } from '../estargz/types.js'
import type { Descriptor } from '../registry/manifest.js'
import { isGzipLayer } from '../registry/media-types.js'
import { DrainableStream } from './blob-stream.js'
import type { ConvertCache, LayerConvertOptions } from './convert-cache.js'
import type { ImageInput } from './image-io.js'
import { gzipLayerMediaType, isForeignLayer, type ImageFormat } from './image-rewrite.js'
import type { Progress } from './progress.js'
import { zstdLayerAnnotations } from './zstd-layer.js'
import { ZSTD_LAYER_MEDIA_TYPE } from '../estargz/zstd-format.js'

export type LayerAction = 'converted' | 'cached' | 'kept' | 'foreign'

export interface LayerOutcome {
  source: Descriptor
  /** The descriptor for the new manifest. */
  desc: Descriptor
  diffID: string
  action: LayerAction
  /** Local copy of the output blob (converted and cached layers). */
  path: string | undefined
  tocDigest: string | undefined
  uncompressedSize: number | undefined
  missingPrioritizedFiles: string[]
  /** External-TOC conversions: the TOC blob (in the cache) that goes into the `-esgztoc` image. */
  externalToc?: { digest: string; size: number; path: string }
}

export interface LayerJobOptions {
  cache: ConvertCache
  convert: LayerConvertOptions
  format: ImageFormat
  /** Keep layers that are already eStargz (annotations + footer). Default true. */
  keepEstargz?: boolean
  progress?: Progress
  onWarning?: (message: string) => void
}

/** True when `layer` is gzip, carries both eStargz annotations, and ends in a stargz footer. */
export async function isEstargzLayer(input: ImageInput, layer: Descriptor): Promise<boolean> {
  const a = layer.annotations
  if (!isGzipLayer(layer.mediaType) || !a?.[TOC_DIGEST_ANNOTATION] || !a[UNCOMPRESSED_SIZE_ANNOTATION]) return false
  if (!/^\d+$/.test(a[UNCOMPRESSED_SIZE_ANNOTATION]) || layer.size < FOOTER_SIZE) return false
  const blob = await input.openBlob(layer)
  try {
    parseFooter(await blob.read(blob.size - FOOTER_SIZE, FOOTER_SIZE), blob.size)
    return true
  } catch (e) {
    if (e instanceof FooterError) return false
    throw e
  } finally {
    await blob.close?.()
  }
}

function short(d: string): string { return d.replace(/^sha256:/, '').slice(0, 12) }

export async function runLayerJob(input: ImageInput, layer: Descriptor, diffID: string, opts: LayerJobOptions): Promise<LayerOutcome> {
  const base = { source: layer, path: undefined, tocDigest: undefined, uncompressedSize: undefined, missingPrioritizedFiles: [] }
  if (isForeignLayer(layer)) return { ...base, desc: layer, diffID, action: 'foreign' }
  const prioritized = (opts.convert.prioritizedFiles?.length ?? 0) > 0
  const zstd = opts.convert.zstdChunked === true
  // A gzip eStargz layer is kept only when the output is gzip eStargz with the TOC inside too.
  if ((opts.keepEstargz ?? true) && !prioritized && !zstd && opts.convert.externalToc !== true && await isEstargzLayer(input, layer)) {
    const a = layer.annotations as Record<string, string>
    const desc: Descriptor = { ...layer, mediaType: gzipLayerMediaType(opts.format) }
    opts.progress?.task(short(layer.digest), layer.size).done('kept')
    return { ...base, desc, diffID, action: 'kept', tocDigest: a[TOC_DIGEST_ANNOTATION], uncompressedSize: Number(a[UNCOMPRESSED_SIZE_ANNOTATION]) }
  }
  const task = opts.progress?.task(short(layer.digest), layer.size)
  let fresh = false
  const r = await opts.cache.convert(layer.digest, opts.convert, () => {
    fresh = true
    return new DrainableStream(input.streamBlob(layer, task ? (n) => task.read(n) : undefined))
  }, {
    ...(task ? { onWritten: (n: number) => task.wrote(n) } : {}),
    onWarning: (m) => opts.onWarning?.(`layer ${layer.digest}: ${m}`),
  })
  task?.done(fresh ? 'converted' : 'cached')
  const desc: Descriptor = {
    mediaType: zstd ? ZSTD_LAYER_MEDIA_TYPE : gzipLayerMediaType(opts.format),
    digest: r.digest,
    size: r.size,
    annotations: {
      ...layer.annotations,
      [TOC_DIGEST_ANNOTATION]: r.tocDigest,
      [UNCOMPRESSED_SIZE_ANNOTATION]: String(r.uncompressedSize),
      ...(zstd ? zstdLayerAnnotations(r) : {}),
    },
  }
  return {
    ...base, desc, diffID: r.diffID, action: fresh ? 'converted' : 'cached', path: r.path,
    tocDigest: r.tocDigest, uncompressedSize: r.uncompressedSize, missingPrioritizedFiles: r.missingPrioritizedFiles,
    ...(r.externalTocBlob ? { externalToc: { ...r.externalTocBlob, path: opts.cache.blobPath(r.externalTocBlob.digest) } } : {}),
  }
}
