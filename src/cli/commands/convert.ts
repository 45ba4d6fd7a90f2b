/**
 * stargz convert SRC DST [flags]
 *
 * SRC and DST are registry references or OCI image layouts (oci:DIR[:TAG]). Every layer becomes
 * eStargz. From an index, only the host platform is converted unless --platform names another or
 * --all-platforms asks for every one (ctr-remote's default and flag). Progress goes to stderr;
 * --json prints a summary on stdout. ctr-remote's `image convert` flag names are accepted as
 * aliases, so scripts written for it keep working.
 */
import { resolve } from 'node:path'
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
import { hostPlatform, parsePlatform } from '../../registry/manifest.js'
import { flagBool, flagInt, flagString, positionals, UsageError, type CommandSpec, type OptionSpec, type ParsedArgs } from '../args.js'
import { REGISTRY_OPTIONS } from '../remote.js'

/** The options convert and optimize share. */
export const CONVERT_OPTIONS: readonly OptionSpec[] = [
  { name: 'oci', type: 'boolean', help: 'write OCI media types (default: as the source)' },
  { name: 'docker', type: 'boolean', help: 'write Docker media types (default: as the source)' },
  { name: 'platform', type: 'string', value: 'OS/ARCH[/VARIANT]', help: 'platform to convert from an index (default: this machine)' },
  { name: 'all-platforms', type: 'boolean', help: 'convert every platform of an index' },
  { name: 'chunk-size', type: 'string', value: 'N', help: 'bytes of file data per chunk (default 4 MiB)' },
  { name: 'compression-level', type: 'string', value: '0-9', help: 'gzip level of the eStargz layers' },
  { name: 'prioritized-from', type: 'string', value: 'FILE', help: 'files to put first in their layers (paths or JSON records, one per line)' },
  { name: 'jobs', type: 'string', value: 'N', help: 'layers converted at once (default min(2, cores))' },
  { name: 'no-keep-estargz', type: 'boolean', help: 'convert layers that already are eStargz again' },
  { name: 'zstdchunked', type: 'boolean', help: 'write zstd:chunked layers instead of gzip eStargz (implies OCI media types)' },
  { name: 'external-toc', type: 'boolean', help: 'keep each TOC out of its layer and push the reference\'s <tag>-esgztoc TOC image beside' },
  { name: 'json', type: 'boolean', help: 'print a JSON summary on stdout' },
  { name: 'cache-dir', type: 'string', value: 'DIR', help: 'converted-layer cache (default /var/cache/stargz/convert as root, else $XDG_CACHE_HOME/stargz/convert)' },
  ...REGISTRY_OPTIONS,
  // ctr-remote `image convert` names.
  { name: 'estargz', type: 'boolean', help: 'accepted for ctr-remote compatibility; layers always become eStargz' },
  { name: 'estargz-compression-level', type: 'string', value: '0-9', aliasOf: 'compression-level', help: 'ctr-remote name' },
  { name: 'estargz-chunk-size', type: 'string', value: 'N', aliasOf: 'chunk-size', help: 'ctr-remote name' },
  { name: 'estargz-record-in', type: 'string', value: 'FILE', aliasOf: 'prioritized-from', help: 'ctr-remote name' },
  { name: 'estargz-external-toc', type: 'boolean', aliasOf: 'external-toc', help: 'ctr-remote name' },
  { name: 'estargz-min-chunk-size', type: 'string', value: 'N', help: 'ctr-remote: pack small files into shared gzip members; not implemented, only 0 is honoured (a warning otherwise)' },
]

export const spec: CommandSpec = {
  name: 'stargz convert',
  summary: 'convert an image (registry or oci:DIR) into eStargz, layer by layer, and push it',
  args: 'SRC DST',
  options: CONVERT_OPTIONS,
  notes: 'SRC and DST are image references or oci:DIR[:TAG] layouts.',
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
  if (flagBool(args, 'oci') && flagBool(args, 'docker')) throw new UsageError('--oci and --docker exclude each other')
  const platformFlag = flagString(args, 'platform')
  const allPlatforms = flagBool(args, 'all-platforms')
  if (platformFlag !== undefined && allPlatforms) throw new UsageError('--platform and --all-platforms exclude each other')
  const chunkSize = flagInt(args, 'chunk-size')
  const zstd = flagBool(args, 'zstdchunked')
  if (zstd && flagBool(args, 'external-toc')) throw new UsageError('--external-toc writes gzip eStargz; it cannot be combined with --zstdchunked')
  // zstd:chunked layers have an OCI media type only (as the reference: --zstdchunked needs --oci).
  if (zstd && flagBool(args, 'docker')) throw new UsageError('--zstdchunked writes OCI images; it cannot be used with --docker')
  const level = flagInt(args, 'compression-level', zstd ? 1 : 0)
  if (level !== undefined && level > (zstd ? 22 : 9)) throw new UsageError(`--compression-level must be ${zstd ? '1..22 with --zstdchunked' : '0..9'}, got ${level}`)
  const minChunk = flagInt(args, 'estargz-min-chunk-size', 0)
  if (minChunk !== undefined && minChunk > 0) process.stderr.write(`stargz: warning: --estargz-min-chunk-size ${minChunk} is not implemented; every file starts its own gzip member (as with 0)\n`)
  let platform
  try {
    platform = allPlatforms ? undefined : platformFlag !== undefined ? parsePlatform(platformFlag) : hostPlatform()
  } catch (e) {
    throw new UsageError(`--platform: ${(e as Error).message}`, { cause: e })
  }
  const jobs = flagInt(args, 'jobs')
  const json = flagBool(args, 'json')
  const cache = await ConvertCache.open(resolve(flagString(args, 'cache-dir') ?? defaultConvertCacheDir()))
  return {
    cache,
    json,
    ...(flagBool(args, 'oci') || zstd ? { format: 'oci' as const } : flagBool(args, 'docker') ? { format: 'docker' as const } : {}),
    ...(zstd ? { zstdChunked: true } : {}),
    ...(flagBool(args, 'external-toc') ? { externalToc: true } : {}),
    ...(platform !== undefined ? { platform } : {}),
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

export async function run(args: ParsedArgs): Promise<number> {
  const [srcArg, dstArg] = positionals(args, spec, 2) as [string, string]
  const src = parseLocation(srcArg, 'source')
  const dst = parseLocation(dstArg, 'destination')
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
