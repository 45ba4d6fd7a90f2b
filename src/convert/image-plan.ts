/**
 * What a conversion works on: the source's root document and the image manifests under it,
 * each with its config. Non-image entries of an index (attestations, signatures, artifacts) and,
 * with a platform filter, other platforms are left out and reported.
 */
import { InvalidArgumentError, NotFoundError } from '../errors.js'
import { ManifestError } from '../registry/errors.js'
import { formatPlatform, platformMatches, type Descriptor, type ImageManifest, type Platform } from '../registry/manifest.js'
import type { FetchedDocument, ImageInput } from './image-io.js'
import { isImageConfig } from './image-rewrite.js'

const MAX_DEPTH = 4

export interface SourceImage {
  /** Descriptor of the manifest in its index (with platform), or one made for a root manifest. */
  desc: Descriptor
  doc: FetchedDocument
  manifest: ImageManifest
  config: Buffer
  diffIDs: string[]
  platform: Platform | undefined
}

export interface SourceIndex {
  doc: FetchedDocument
  /** The index's entries, in order: a converted image, a nested index, or a left-out entry. */
  entries: Array<{ desc: Descriptor; node: SourceNode | undefined }>
}

export type SourceNode = { kind: 'image'; image: SourceImage } | { kind: 'index'; index: SourceIndex }

export interface PlanOptions {
  /** Only this platform from indexes. */
  platform?: Platform
  onWarning?: (message: string) => void
}

async function loadImage(input: ImageInput, desc: Descriptor, doc: FetchedDocument): Promise<SourceImage> {
  if (doc.parsed.kind !== 'manifest') throw new ManifestError(`${input.name}: ${doc.digest} is not an image manifest`, {})
  const manifest = doc.parsed.manifest
  const config = await input.readBlob(manifest.config)
  let j: { rootfs?: { diff_ids?: unknown }; os?: unknown; architecture?: unknown; variant?: unknown }
  try { j = JSON.parse(config.toString('utf8')) as typeof j } catch (e) {
    throw new ManifestError(`${input.name}: config ${manifest.config.digest} is not JSON`, {}, { cause: e })
  }
  const ids = j.rootfs?.diff_ids
  if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) throw new ManifestError(`${input.name}: config ${manifest.config.digest} has no rootfs.diff_ids`, {})
  if (ids.length !== manifest.layers.length) {
    throw new ManifestError(`${input.name}: manifest ${doc.digest} has ${manifest.layers.length} layers but its config lists ${ids.length} diff_ids`, {})
  }
  let platform = desc.platform
  if (!platform && typeof j.os === 'string' && typeof j.architecture === 'string') {
    platform = { os: j.os, architecture: j.architecture, ...(typeof j.variant === 'string' && j.variant ? { variant: j.variant } : {}) }
  }
  return { desc, doc, manifest, config, diffIDs: ids as string[], platform }
}

async function planNode(input: ImageInput, desc: Descriptor, doc: FetchedDocument, opts: PlanOptions, depth: number): Promise<SourceNode> {
  if (doc.parsed.kind === 'manifest') {
    if (!isImageConfig(doc.parsed.manifest.config.mediaType)) {
      throw new InvalidArgumentError(`${input.name}: manifest ${doc.digest} is not a container image (config type ${doc.parsed.manifest.config.mediaType})`)
    }
    return { kind: 'image', image: await loadImage(input, desc, doc) }
  }
  if (depth >= MAX_DEPTH) throw new ManifestError(`${input.name}: indexes nested deeper than ${MAX_DEPTH}`, {})
  const entries: SourceIndex['entries'] = []
  for (const d of doc.parsed.index.manifests) {
    const child = await input.child(d)
    if (child.parsed.kind === 'manifest' && !isImageConfig(child.parsed.manifest.config.mediaType)) {
      opts.onWarning?.(`leaving out ${d.digest} (${child.parsed.manifest.config.mediaType}): not a container image`)
      entries.push({ desc: d, node: undefined })
      continue
    }
    if (child.parsed.kind === 'manifest' && opts.platform && !platformMatches(opts.platform, d.platform)) {
      entries.push({ desc: d, node: undefined })
      continue
    }
    entries.push({ desc: d, node: await planNode(input, d, child, opts, depth + 1) })
  }
  return { kind: 'index', index: { doc, entries } }
}

export async function planSource(input: ImageInput, opts: PlanOptions = {}): Promise<SourceNode> {
  const doc = await input.root()
  const desc: Descriptor = { mediaType: doc.mediaType, digest: doc.digest, size: doc.bytes.length }
  const node = await planNode(input, desc, doc, opts, 0)
  if (opts.platform && imagesOf(node).length === 0) {
    throw new NotFoundError(`${input.name} has no image for platform ${formatPlatform(opts.platform)}`)
  }
  return node
}

export function imagesOf(node: SourceNode): SourceImage[] {
  if (node.kind === 'image') return [node.image]
  return node.index.entries.flatMap((e) => (e.node ? imagesOf(e.node) : []))
}
