/**
 * Image conversion: plan the source, convert every layer (bounded parallelism, shared cache),
 * then write bottom-up — layer blobs the destination lacks, configs, manifests, and the index
 * last — so that nothing is ever referenced before it exists.
 */
import { availableParallelism } from 'node:os'
import { formatPlatform, sha256Digest, type Descriptor, type Platform } from '../registry/manifest.js'
import { DrainableStream } from './blob-stream.js'
import type { ConvertCache, LayerConvertOptions } from './convert-cache.js'
import type { BlobPlacement, ImageInput, ImageOutput } from './image-io.js'
import { planSource, type SourceImage, type SourceNode } from './image-plan.js'
import { configMediaType, formatOfManifest, rewriteConfig, rewriteIndex, rewriteManifest, type ImageFormat } from './image-rewrite.js'
import { runLayerJob, type LayerAction, type LayerOutcome } from './layer-job.js'
import { Limiter } from './limit.js'
import type { Progress } from './progress.js'

export interface ConvertImageOptions {
  cache: ConvertCache
  /** Force Docker or OCI media types; default: as the source. */
  format?: ImageFormat
  /** Only this platform from an index (the result is an index with just it). */
  platform?: Platform
  chunkSize?: number
  compressionLevel?: number
  /** Files to put first in a layer: by source layer digest and position (0 = bottom). */
  prioritizedFiles?: (layer: Descriptor, index: number, image: SourceImage) => string[] | undefined
  /** Layers converted at once. Default min(2, cores). */
  jobs?: number
  keepEstargz?: boolean
  /** Write zstd:chunked layers (OCI only). */
  zstdChunked?: boolean
  /** Keep TOCs out of the layers; each layer's TOC blob is stored beside it (see LayerSummary.externalToc). */
  externalToc?: boolean
  progress?: Progress
  onWarning?: (message: string) => void
}

export interface LayerSummary {
  source: string
  sourceSize: number
  digest: string
  size: number
  mediaType: string
  diffID: string
  tocDigest: string | undefined
  uncompressedSize: number | undefined
  action: LayerAction
  placement: BlobPlacement | 'skipped'
  missingPrioritizedFiles: string[]
  /** External-TOC conversions: the layer's TOC blob, stored in the destination beside the layer. */
  externalToc?: { digest: string; size: number }
}

export interface ImageSummary {
  platform: string | undefined
  sourceDigest: string
  digest: string
  mediaType: string
  size: number
  config: string
  layers: LayerSummary[]
}

export interface ConvertSummary {
  source: string
  destination: string
  /** Digest of what the destination tag now points at (the index for an index). */
  digest: string
  mediaType: string
  size: number
  images: ImageSummary[]
}

function layerOptions(opts: ConvertImageOptions, prioritized: string[] | undefined): LayerConvertOptions {
  return {
    ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
    ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
    ...(prioritized && prioritized.length > 0 ? { prioritizedFiles: prioritized } : {}),
    ...(opts.zstdChunked ? { zstdChunked: true } : {}),
    ...(opts.externalToc ? { externalToc: true } : {}),
  }
}

/** Convert every layer of one image (through `limiter`); results in layer order. */
export function convertImageLayers(input: ImageInput, image: SourceImage, format: ImageFormat, opts: ConvertImageOptions, limiter: Limiter): Promise<LayerOutcome[]> {
  return Promise.all(image.manifest.layers.map((layer, i) => limiter.run(() => runLayerJob(input, layer, image.diffIDs[i] as string, {
    cache: opts.cache,
    convert: layerOptions(opts, opts.prioritizedFiles?.(layer, i, image)),
    format,
    ...(opts.keepEstargz !== undefined ? { keepEstargz: opts.keepEstargz } : {}),
    ...(opts.progress ? { progress: opts.progress } : {}),
    ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
  }))))
}

async function placeLayer(input: ImageInput, output: ImageOutput, cache: ConvertCache, l: LayerOutcome): Promise<BlobPlacement | 'skipped'> {
  if (l.action === 'foreign') return 'skipped'
  if (l.path !== undefined) return output.putBlobFile(l.desc, l.path)
  // Kept as it was: link it across repositories if possible, else copy it through the cache.
  const linked = await output.tryLinkBlob(input, l.source)
  if (linked) return linked
  const got = await cache.convertIdentity(l.source.digest, () => new DrainableStream(input.streamBlob(l.source)))
  return output.putBlobFile(l.desc, got)
}

async function writeImage(input: ImageInput, output: ImageOutput, image: SourceImage, opts: ConvertImageOptions, limiter: Limiter, root: boolean): Promise<{ desc: Descriptor; summary: ImageSummary }> {
  const format = opts.format ?? formatOfManifest(image.doc.mediaType)
  const layers = await convertImageLayers(input, image, format, opts, limiter)
  const placements = await Promise.all(layers.map((l) => limiter.run(() => placeLayer(input, output, opts.cache, l))))
  // TOC blobs go to the same repository or layout; the `-esgztoc` image that names them is
  // written by the caller (external-toc-image.ts) once every layer is known.
  for (const l of layers) if (l.externalToc) await output.putBlobFile({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.externalToc.digest, size: l.externalToc.size }, l.externalToc.path)
  const config = rewriteConfig(image.config, layers.map((l) => l.diffID), `${input.name} ${image.doc.digest}`)
  const configDesc: Descriptor = { mediaType: configMediaType(format), digest: sha256Digest(config), size: config.length }
  await output.putBlobBytes(configDesc, config)
  const layerDescs = layers.map((l) => {
    const d: Descriptor = { mediaType: l.desc.mediaType, digest: l.desc.digest, size: l.desc.size }
    if (l.desc.urls) d.urls = l.desc.urls
    if (l.desc.annotations) d.annotations = l.desc.annotations
    return d
  })
  const m = rewriteManifest(image.doc.bytes, format, configDesc, layerDescs)
  await output.putManifest(m.bytes, m.mediaType, root)
  const desc: Descriptor = { mediaType: m.mediaType, digest: sha256Digest(m.bytes), size: m.bytes.length }
  if (image.desc.annotations) desc.annotations = image.desc.annotations
  if (image.desc.platform) desc.platform = image.desc.platform
  return {
    desc,
    summary: {
      platform: image.platform ? formatPlatform(image.platform) : undefined,
      sourceDigest: image.doc.digest,
      digest: desc.digest,
      mediaType: desc.mediaType,
      size: desc.size,
      config: configDesc.digest,
      layers: layers.map((l, i) => ({
        source: l.source.digest, sourceSize: l.source.size, digest: l.desc.digest, size: l.desc.size, mediaType: l.desc.mediaType,
        diffID: l.diffID, tocDigest: l.tocDigest, uncompressedSize: l.uncompressedSize, action: l.action,
        placement: placements[i] as BlobPlacement | 'skipped', missingPrioritizedFiles: l.missingPrioritizedFiles,
        ...(l.externalToc ? { externalToc: { digest: l.externalToc.digest, size: l.externalToc.size } } : {}),
      })),
    },
  }
}

async function writeNode(input: ImageInput, output: ImageOutput, node: SourceNode, opts: ConvertImageOptions, limiter: Limiter, root: boolean, images: ImageSummary[]): Promise<Descriptor> {
  if (node.kind === 'image') {
    const r = await writeImage(input, output, node.image, opts, limiter, root)
    images.push(r.summary)
    return r.desc
  }
  const children = await Promise.all(node.index.entries.map(async (e) => {
    if (!e.node) return undefined
    const d = await writeNode(input, output, e.node, opts, limiter, false, images)
    return { ...d, ...(e.desc.platform ? { platform: e.desc.platform } : {}), ...(e.desc.annotations ? { annotations: e.desc.annotations } : {}) }
  }))
  const manifests = children.filter((d): d is Descriptor => d !== undefined)
  const format = opts.format ?? formatOfManifest(node.index.doc.mediaType)
  const ix = rewriteIndex(node.index.doc.bytes, format, manifests)
  await output.putManifest(ix.bytes, ix.mediaType, root)
  return { mediaType: ix.mediaType, digest: sha256Digest(ix.bytes), size: ix.bytes.length }
}

export function defaultJobs(): number { return Math.max(1, Math.min(2, availableParallelism())) }

export async function convertImage(input: ImageInput, output: ImageOutput, opts: ConvertImageOptions): Promise<ConvertSummary> {
  const node = await planSource(input, { ...(opts.platform ? { platform: opts.platform } : {}), ...(opts.onWarning ? { onWarning: opts.onWarning } : {}) })
  const limiter = new Limiter(opts.jobs ?? defaultJobs())
  const images: ImageSummary[] = []
  const root = await writeNode(input, output, node, opts, limiter, true, images)
  return { source: input.name, destination: output.name, digest: root.digest, mediaType: root.mediaType, size: root.size, images }
}
