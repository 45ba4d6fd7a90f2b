/**
 * `stargz inspect REF`: resolve an image and describe it — platform, manifest and config digests,
 * and per layer its media type, size, digest, annotations, and whether it is eStargz. The eStargz
 * probe is one range read of the blob's last 51 bytes, parsed as an eStargz or legacy footer.
 */
import { parseFooter } from '../../estargz/footer.js'
import { FOOTER_SIZE, LEGACY_FOOTER_SIZE, TOC_DIGEST_ANNOTATION, type Footer } from '../../estargz/types.js'
import type { RegistryClient, ResolvedImage } from '../../registry/client.js'
import type { Descriptor } from '../../registry/manifest.js'
import { formatPlatform } from '../../registry/manifest.js'
import { isGzipLayer } from '../../registry/media-types.js'
import { formatReference } from '../../registry/reference.js'
import { flagBool, positionals, UsageError, type CommandSpec, type ParsedArgs } from '../args.js'
import { clientFromArgs, REMOTE_OPTIONS } from '../remote.js'

export const spec: CommandSpec = {
  name: 'stargz inspect',
  summary: 'describe an image in a registry: platform, digests, layers, eStargz or not',
  args: 'REF',
  options: [
    ...REMOTE_OPTIONS.filter((o) => o.name !== 'layer'),
    { name: 'json', type: 'boolean', help: 'print the report as JSON instead of a table' },
    { name: 'table', type: 'boolean', help: 'print a table (the default; kept for scripts that pass it)' },
  ],
  notes: 'The eStargz probe is one range read of each gzip layer\'s last 51 bytes.',
}

export interface LayerReport {
  index: number
  mediaType: string
  size: number
  digest: string
  annotations: Record<string, string>
  estargz: boolean
  footer?: Footer
  tocDigest?: string
}

export interface InspectReport {
  reference: string
  platform: string | undefined
  mediaType: string
  manifestDigest: string
  indexDigest?: string
  configDigest: string
  layers: LayerReport[]
  fetched: { bytes: number; requests: number }
}

async function probeLayer(client: RegistryClient, image: ResolvedImage, d: Descriptor, index: number, fetched: InspectReport['fetched']): Promise<LayerReport> {
  const r: LayerReport = { index, mediaType: d.mediaType, size: d.size, digest: d.digest, annotations: d.annotations ?? {}, estargz: false }
  const toc = d.annotations?.[TOC_DIGEST_ANNOTATION]
  if (toc) r.tocDigest = toc
  if (!isGzipLayer(d.mediaType) || d.size < LEGACY_FOOTER_SIZE) return r
  const blob = await client.blob(image.reference, d.digest, d.size)
  try {
    const n = Math.min(FOOTER_SIZE, d.size)
    const tail = await blob.read(d.size - n, n)
    try {
      r.footer = parseFooter(tail, d.size)
      r.estargz = true
    } catch { /* not a footer: a plain gzip layer */ }
  } finally {
    const s = blob.stats()
    fetched.bytes += s.bytesFetched
    fetched.requests += s.requests
    await blob.close()
  }
  return r
}

export async function inspect(client: RegistryClient, ref: string): Promise<InspectReport> {
  const image = await client.resolve(ref)
  const fetched = { bytes: 0, requests: 0 }
  const layers = await Promise.all(image.layers.map((d, i) => probeLayer(client, image, d, i, fetched)))
  const out: InspectReport = {
    reference: formatReference(image.reference),
    platform: image.platform ? formatPlatform(image.platform) : undefined,
    mediaType: image.mediaType,
    manifestDigest: image.digest,
    configDigest: image.configDescriptor.digest,
    layers,
    fetched,
  }
  if (image.indexDigest) out.indexDigest = image.indexDigest
  return out
}

function short(d: string): string {
  return d.length > 19 ? d.slice(0, 19) : d
}

export function formatTable(r: InspectReport): string {
  const head = [
    `REFERENCE  ${r.reference}`,
    `PLATFORM   ${r.platform ?? '(unknown)'}`,
    `MANIFEST   ${r.manifestDigest} (${r.mediaType})`,
    ...(r.indexDigest ? [`INDEX      ${r.indexDigest}`] : []),
    `CONFIG     ${r.configDigest}`,
    '',
  ]
  const rows = [['#', 'MEDIA TYPE', 'SIZE', 'DIGEST', 'ESTARGZ', 'TOC DIGEST']]
  for (const l of r.layers) {
    rows.push([String(l.index), l.mediaType, String(l.size), short(l.digest), l.estargz ? (l.footer?.kind === 'legacy' ? 'legacy' : 'yes') : 'no', l.tocDigest ? short(l.tocDigest) : '-'])
  }
  const widths = (rows[0] as string[]).map((_, c) => Math.max(...rows.map((row) => (row[c] as string).length)))
  const lines = rows.map((row) => row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c] as number))).join('  '))
  return [...head, ...lines].join('\n') + '\n'
}

export async function run(args: ParsedArgs): Promise<number> {
  const [ref] = positionals(args, spec, 1) as [string]
  if (flagBool(args, 'json') && flagBool(args, 'table')) throw new UsageError('--json and --table exclude each other')
  const client = clientFromArgs(args)
  try {
    const report = await inspect(client, ref)
    process.stdout.write(flagBool(args, 'json') ? JSON.stringify(report, null, 2) + '\n' : formatTable(report))
    if (flagBool(args, 'stats')) process.stderr.write(`stargz: inspect fetched ${report.fetched.bytes} bytes of layer data in ${report.fetched.requests} requests\n`)
    return 0
  } finally {
    await client.close()
  }
}
