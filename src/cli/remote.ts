/**
 * Registry flags shared by every command that can read a blob from a registry, and the helper
 * that turns "a path or an image reference" into a RangeSource.
 *
 *   --plain-http         talk http to the registry (default https)
 *   --insecure           skip TLS verification, and fall back to http
 *   --platform P         os/arch[/variant] to pick from an index (default: this machine)
 *   --hosts-dir DIR      containerd certs.d directory (default /etc/containerd/certs.d)
 *   --layer N|DIGEST     which layer (index from 0, or its digest); needed when there are several
 *   --stats              print bytes fetched and requests made to stderr when done
 */
import { stat } from 'node:fs/promises'
import { InvalidArgumentError } from '../errors.js'
import type { RangeSource } from '../estargz/types.js'
import { TOC_DIGEST_ANNOTATION } from '../estargz/types.js'
import { RegistryClient, type ResolvedImage } from '../registry/client.js'
import { DEFAULT_HOSTS_DIR } from '../registry/hosts.js'
import type { Descriptor } from '../registry/manifest.js'
import { formatReference, parseReference, type Reference } from '../registry/reference.js'
import { flagBool, flagString, type OptionSpec, type ParsedArgs } from './args.js'
import { FileRangeSource } from '../estargz/file-source.js'

/** Registry options, for commands that read from a registry. */
export const REGISTRY_OPTIONS: readonly OptionSpec[] = [
  { name: 'plain-http', type: 'boolean', help: 'talk http to the registry (default https)' },
  { name: 'insecure', type: 'boolean', help: 'skip TLS verification, and fall back to http' },
  { name: 'hosts-dir', type: 'string', value: 'DIR', help: `containerd certs.d directory (default ${DEFAULT_HOSTS_DIR})` },
]

/** Options of every command that opens one blob of an image (or a local file). */
export const REMOTE_OPTIONS: readonly OptionSpec[] = [
  { name: 'platform', type: 'string', value: 'OS/ARCH[/VARIANT]', help: 'platform to pick from an index (default: this machine)' },
  { name: 'layer', type: 'string', value: 'N|DIGEST', help: 'which layer (index from 0, or its digest); needed when there are several' },
  ...REGISTRY_OPTIONS,
  { name: 'stats', type: 'boolean', help: 'print bytes fetched and requests made to stderr when done' },
]

export const remoteFlagSpec = {
  values: REMOTE_OPTIONS.filter((o) => o.type === 'string').map((o) => o.name),
  booleans: REMOTE_OPTIONS.filter((o) => o.type === 'boolean').map((o) => o.name),
}

export interface SourceStats { bytesFetched: number; requests: number }

export interface OpenedSource {
  source: RangeSource
  tocDigest: string | undefined
  /** The layer descriptor when the source is a registry blob. */
  layer?: Descriptor
  stats(): SourceStats
  close(): Promise<void>
}

/** A RegistryClient configured from the common flags. The caller closes it. */
export function clientFromArgs(args: ParsedArgs): RegistryClient {
  return new RegistryClient({
    plainHttp: flagBool(args, 'plain-http'),
    insecure: flagBool(args, 'insecure'),
    hostsDir: flagString(args, 'hosts-dir') ?? DEFAULT_HOSTS_DIR,
    platform: flagString(args, 'platform'),
  })
}

async function isPath(p: string): Promise<boolean> {
  try { await stat(p); return true } catch { return false }
}

/** Pick a layer by --layer (index or digest); required when the image has several. */
export function pickLayer(image: ResolvedImage, layerFlag: string | undefined): Descriptor {
  const layers = image.layers
  const list = (): string => layers.map((l, i) => `  ${i}: ${l.digest} ${l.mediaType} ${l.size} bytes`).join('\n')
  if (layerFlag === undefined) {
    if (layers.length === 1) return layers[0] as Descriptor
    throw new InvalidArgumentError(`${image.name} has ${layers.length} layers; choose one with --layer N or --layer DIGEST:\n${list()}`)
  }
  if (/^\d+$/.test(layerFlag)) {
    const l = layers[Number(layerFlag)]
    if (!l) throw new InvalidArgumentError(`--layer ${layerFlag}: ${image.name} has layers 0..${layers.length - 1}`)
    return l
  }
  const matches = layers.filter((l) => l.digest === layerFlag || (layerFlag.length >= 12 && l.digest.replace(/^sha256:/, '').startsWith(layerFlag.replace(/^sha256:/, ''))))
  if (matches.length === 1) return matches[0] as Descriptor
  throw new InvalidArgumentError(`--layer ${layerFlag}: ${matches.length === 0 ? 'no' : 'more than one'} layer of ${image.name} matches:\n${list()}`)
}

/**
 * Open POSITIONAL as a local file when it exists, else as an image reference (resolve, pick the
 * layer, open it as a range-readable registry blob). `tocDigest` is --toc-digest when given,
 * else the layer's `containerd.io/snapshot/stargz/toc.digest` annotation.
 */
export async function openSourceFromArgs(positional: string, args: ParsedArgs): Promise<OpenedSource> {
  const explicitToc = flagString(args, 'toc-digest')
  const printStats = flagBool(args, 'stats')
  if (await isPath(positional)) {
    const source = await FileRangeSource.open(positional)
    return {
      source,
      tocDigest: explicitToc,
      stats: () => ({ bytesFetched: 0, requests: 0 }),
      close: () => source.close(),
    }
  }
  let ref: Reference
  try { ref = parseReference(positional) } catch (e) {
    throw new InvalidArgumentError(`${JSON.stringify(positional)} is neither an existing file nor an image reference (${(e as Error).message})`, { cause: e })
  }
  const client = clientFromArgs(args)
  try {
    const image = await client.resolve(ref)
    const layer = pickLayer(image, flagString(args, 'layer'))
    const blob = await client.blob(ref, layer.digest, layer.size)
    let closed = false
    return {
      source: blob,
      tocDigest: explicitToc ?? layer.annotations?.[TOC_DIGEST_ANNOTATION],
      layer,
      stats: () => { const s = blob.stats(); return { bytesFetched: s.bytesFetched, requests: s.requests } },
      close: async () => {
        if (closed) return
        closed = true
        if (printStats) {
          const s = blob.stats()
          process.stderr.write(`stargz: ${formatReference(ref)} layer ${layer.digest}: fetched ${s.bytesFetched} of ${layer.size} bytes in ${s.requests} requests\n`)
        }
        await blob.close()
        await client.close()
      },
    }
  } catch (e) {
    await client.close()
    throw e
  }
}
