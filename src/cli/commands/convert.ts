/**
 * stargz convert SRC DST [--oci|--docker] [--platform P | --all-platforms] [--chunk-size N]
 *   [--compression-level N] [--prioritized-from FILE] [--jobs N] [--no-keep-estargz] [--zstdchunked] [--external-toc] [--json]
 *   [--cache-dir D] [--plain-http] [--insecure] [--hosts-dir D]
 *
 * SRC and DST are registry references or OCI image layouts (oci:DIR[:TAG]). Every layer becomes
 * eStargz; an index converts every platform unless --platform names one. Progress goes to stderr;
 * --json prints a summary on stdout.
 */
import { resolve } from 'node:path'
import { InvalidArgumentError } from '../../errors.js'
import { ConvertCache } from '../../convert/convert-cache.js'
import { defaultConvertCacheDir } from '../../convert/cache-dir.js'
import { convertImage, type ConvertImageOptions, type ConvertSummary } from '../../convert/convert-image.js'
import type { ImageInput, ImageOutput } from '../../convert/image-io.js'
import { parseLocation, type ImageLocation } from '../../convert/location.js'
import { OciLayoutInput, OciLayoutOutput } from '../../convert/oci-layout.js'
import { tocImageLocation, writeTocImage } from '../../convert/external-toc-image.js'
import { pathsForLayer, readPrioritizedList, type PrioritizedRecord } from '../../convert/prioritized-list.js'
import { Progress } from '../../convert/progress.js'
import { RegistryInput, RegistryOutput } from '../../convert/registry-io.js'
import { RegistryClient } from '../../registry/client.js'
import { DEFAULT_HOSTS_DIR } from '../../registry/hosts.js'
import { parsePlatform } from '../../registry/manifest.js'
import { flagBool, flagInt, flagString, parseArgs, type ParsedArgs } from '../args.js'

export const summary = 'convert an image (registry or oci:DIR) into eStargz, layer by layer, and push it'

export const USAGE = 'usage: stargz convert SRC DST [--oci|--docker] [--platform P|--all-platforms] [--chunk-size N] [--compression-level N] [--prioritized-from FILE] [--jobs N] [--no-keep-estargz] [--zstdchunked] [--external-toc] [--json] [--cache-dir D] [--plain-http] [--insecure] [--hosts-dir D]'

export const convertFlagSpec = {
  values: ['platform', 'chunk-size', 'compression-level', 'prioritized-from', 'jobs', 'cache-dir', 'hosts-dir'],
  booleans: ['oci', 'docker', 'all-platforms', 'no-keep-estargz', 'zstdchunked', 'external-toc', 'json', 'plain-http', 'insecure', 'help'],
}

export interface Ends {
  input: ImageInput
  output: ImageOutput
  client: RegistryClient | undefined
  close(): Promise<void>
}

/** Input and output for SRC and DST, sharing one registry client when either is a registry. */
export function openEnds(src: ImageLocation, dst: ImageLocation, args: ParsedArgs): Ends {
  const needsClient = src.kind === 'registry' || dst.kind === 'registry'
  const client = needsClient
    ? new RegistryClient({ plainHttp: flagBool(args, 'plain-http'), insecure: flagBool(args, 'insecure'), hostsDir: flagString(args, 'hosts-dir') ?? DEFAULT_HOSTS_DIR })
    : undefined
  const input = src.kind === 'registry' ? new RegistryInput(client as RegistryClient, src.ref) : new OciLayoutInput(src.dir, src.tag)
  const output = dst.kind === 'registry' ? new RegistryOutput(client as RegistryClient, dst.ref) : new OciLayoutOutput(dst.dir, dst.tag)
  return { input, output, client, close: async () => { await client?.close() } }
}

/** The options shared by convert and optimize (everything but the prioritized files). */
export async function convertOptionsFromArgs(args: ParsedArgs): Promise<ConvertImageOptions & { json: boolean }> {
  if (flagBool(args, 'oci') && flagBool(args, 'docker')) throw new InvalidArgumentError('--oci and --docker exclude each other')
  const platformFlag = flagString(args, 'platform')
  if (platformFlag !== undefined && flagBool(args, 'all-platforms')) throw new InvalidArgumentError('--platform and --all-platforms exclude each other')
  const chunkSize = flagInt(args, 'chunk-size')
  const zstd = flagBool(args, 'zstdchunked')
  if (zstd && flagBool(args, 'external-toc')) throw new InvalidArgumentError('--external-toc writes gzip eStargz; it cannot be combined with --zstdchunked')
  // zstd:chunked layers have an OCI media type only (as the reference: --zstdchunked needs --oci).
  if (zstd && flagBool(args, 'docker')) throw new InvalidArgumentError('--zstdchunked writes OCI images; it cannot be used with --docker')
  const level = flagInt(args, 'compression-level', zstd ? 1 : 0)
  if (level !== undefined && level > (zstd ? 22 : 9)) throw new InvalidArgumentError(`--compression-level must be ${zstd ? '1..22 with --zstdchunked' : '0..9'}, got ${level}`)
  const jobs = flagInt(args, 'jobs')
  const json = flagBool(args, 'json')
  const cache = await ConvertCache.open(resolve(flagString(args, 'cache-dir') ?? defaultConvertCacheDir()))
  return {
    cache,
    json,
    ...(flagBool(args, 'oci') || zstd ? { format: 'oci' as const } : flagBool(args, 'docker') ? { format: 'docker' as const } : {}),
    ...(zstd ? { zstdChunked: true } : {}),
    ...(flagBool(args, 'external-toc') ? { externalToc: true } : {}),
    ...(platformFlag !== undefined ? { platform: parsePlatform(platformFlag) } : {}),
    ...(chunkSize !== undefined ? { chunkSize } : {}),
    ...(level !== undefined ? { compressionLevel: level } : {}),
    ...(jobs !== undefined ? { jobs } : {}),
    keepEstargz: !flagBool(args, 'no-keep-estargz'),
    progress: new Progress(process.stderr, true),
    onWarning: (m) => process.stderr.write(`stargz: warning: ${m}\n`),
  }
}

export function prioritizedFromRecords(records: readonly PrioritizedRecord[]): ConvertImageOptions['prioritizedFiles'] {
  return (layer, index) => {
    const paths = pathsForLayer(records, layer.digest, index)
    return paths.length > 0 ? paths : undefined
  }
}

/** Paths asked for that no layer of any image had: worth a warning (likely a typo or a wrong image). */
export function reportMissing(s: ConvertSummary, records: readonly PrioritizedRecord[]): void {
  for (const img of s.images) {
    const missingEverywhere = new Set(records.map((r) => r.path))
    for (const l of img.layers) {
      const asked = new Set(l.missingPrioritizedFiles)
      for (const p of missingEverywhere) if (!asked.has(p) && l.action !== 'kept' && l.action !== 'foreign') missingEverywhere.delete(p)
    }
    if (missingEverywhere.size > 0) {
      const list = [...missingEverywhere]
      process.stderr.write(`stargz: warning: ${list.length} prioritized path(s) are in no layer of ${img.digest}: ${list.slice(0, 10).join(', ')}${list.length > 10 ? ', …' : ''}\n`)
    }
  }
}

export function printSummary(s: ConvertSummary, json: boolean): void {
  if (json) { process.stdout.write(JSON.stringify(s, null, 2) + '\n'); return }
  process.stderr.write(`stargz: ${s.destination} → ${s.digest}\n`)
}

export async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, convertFlagSpec)
  if (flagBool(args, 'help')) { process.stdout.write(USAGE + '\n'); return 0 }
  if (args.positionals.length !== 2) throw new InvalidArgumentError(`expected SRC and DST\n${USAGE}`)
  const src = parseLocation(args.positionals[0] as string, 'source')
  const dst = parseLocation(args.positionals[1] as string, 'destination')
  const opts = await convertOptionsFromArgs(args)
  const listPath = flagString(args, 'prioritized-from')
  const records = listPath === undefined ? [] : await readPrioritizedList(listPath)
  if (records.length > 0) opts.prioritizedFiles = prioritizedFromRecords(records)
  // Missing prioritized files are reported once per image below, not once per layer.
  const onWarning = opts.onWarning
  opts.onWarning = (m) => { if (!m.includes('prioritized file')) onWarning?.(m) }
  const ends = openEnds(src, dst, args)
  try {
    const s = await convertImage(ends.input, ends.output, opts)
    if (opts.externalToc) {
      // The TOC image beside the image, where readers look for it (<tag>-esgztoc).
      const tocEnds = openEnds(src, tocImageLocation(dst), args)
      try {
        const toc = await writeTocImage(tocEnds.output, s)
        process.stderr.write(`stargz: TOC image ${tocEnds.output.name} → ${toc.digest} (${toc.layers} TOCs)\n`)
      } finally {
        await tocEnds.close()
      }
    }
    opts.progress?.close()
    if (records.length > 0) reportMissing(s, records)
    printSummary(s, opts.json)
    return 0
  } finally {
    opts.progress?.close()
    await ends.close()
  }
}
