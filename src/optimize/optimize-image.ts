/**
 * `stargz optimize`: convert once without priorities (stage one, cached), mount that lazily and
 * run the workload to record the files it opens, then convert again with those files first in
 * their layers, so that the prefetch range (everything before `.prefetch.landmark`) covers them.
 * With a recorded list given, the run is skipped.
 */
import { formatPlatform, hostPlatform, platformMatches, type Platform } from '../registry/manifest.js'
import { convertImage, convertImageLayers, defaultJobs, type ConvertImageOptions, type ConvertSummary } from '../convert/convert-image.js'
import type { ImageInput, ImageOutput } from '../convert/image-io.js'
import { imagesOf, planSource, type SourceImage } from '../convert/image-plan.js'
import { formatOfManifest } from '../convert/image-rewrite.js'
import { Limiter } from '../convert/limit.js'
import { pathsForLayer, type PrioritizedRecord } from '../convert/prioritized-list.js'
import { NotFoundError } from '../errors.js'
import { recordAccesses, type RecordOptions } from './record.js'
import type { RunResult } from './workload.js'

export interface OptimizeOptions extends Omit<ConvertImageOptions, 'prioritizedFiles'> {
  /** Use this record instead of running the workload. */
  records?: PrioritizedRecord[]
  record?: RecordOptions
  /** Convert every platform of an index (others get the recorded paths, unscoped). */
  allPlatforms?: boolean
}

export interface OptimizeResult {
  summary: ConvertSummary
  records: PrioritizedRecord[]
  run: RunResult | undefined
  /** Digest of the image manifest the workload ran on. */
  recordedOn: string
}

function pickImage(images: SourceImage[], want: Platform, name: string): SourceImage {
  if (images.length === 1) return images[0] as SourceImage
  const m = images.find((i) => platformMatches(want, i.platform))
  if (!m) throw new NotFoundError(`${name} has no image for platform ${formatPlatform(want)} (has ${images.map((i) => (i.platform ? formatPlatform(i.platform) : '?')).join(', ')}); pass --platform`)
  return m
}

export async function optimizeImage(input: ImageInput, output: ImageOutput, opts: OptimizeOptions): Promise<OptimizeResult> {
  const want = opts.platform ?? hostPlatform()
  const plan = await planSource(input, { ...(opts.platform ? { platform: opts.platform } : {}), ...(opts.onWarning ? { onWarning: opts.onWarning } : {}) })
  const image = pickImage(imagesOf(plan), want, input.name)
  let records = opts.records
  let run: RunResult | undefined
  if (records === undefined) {
    if (!opts.record) throw new Error('optimizeImage: neither records nor record options given')
    const limiter = new Limiter(opts.jobs ?? defaultJobs())
    const stageOne = await convertImageLayers(input, image, opts.format ?? formatOfManifest(image.doc.mediaType), opts, limiter)
    const rec = await recordAccesses(input, image, stageOne, opts.record)
    records = rec.records
    run = rec.run
  }
  const recorded = records
  const unscoped = [...new Set(recorded.map((r) => r.path))]
  const convertOpts: ConvertImageOptions = {
    ...opts,
    prioritizedFiles: (layer, i, img) => {
      const paths = img.doc.digest === image.doc.digest ? pathsForLayer(recorded, layer.digest, i) : unscoped
      return paths.length > 0 ? paths : undefined
    },
  }
  // Without --all-platforms, only the image the workload ran on (as `ctr-remote optimize`).
  delete convertOpts.platform
  if (!opts.allPlatforms) convertOpts.platform = image.platform ?? want
  else if (opts.platform) convertOpts.platform = opts.platform
  const summary = await convertImage(input, output, convertOpts)
  return { summary, records: recorded, run, recordedOn: image.doc.digest }
}
