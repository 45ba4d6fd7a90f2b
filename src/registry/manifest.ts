/**
 * Manifests and indexes (Docker v2 schema 2, Docker manifest list, OCI manifest, OCI index):
 * parsing with validation, platform selection, digests.
 */
import { createHash } from 'node:crypto'
import { InvalidArgumentError, NotFoundError } from '../errors.js'
import {
  DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED, OCI_INDEX, OCI_MANIFEST,
  isIndexType, isManifestType,
} from './media-types.js'
import { digestMismatch, ManifestError, type RequestContext } from './errors.js'
import { validateDigest } from './reference.js'

export interface Platform {
  os: string
  architecture: string
  variant?: string
  'os.version'?: string
  'os.features'?: string[]
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
  urls?: string[]
  platform?: Platform
  artifactType?: string
}

export interface ImageManifest {
  schemaVersion: 2
  mediaType: string
  config: Descriptor
  layers: Descriptor[]
  annotations?: Record<string, string>
  subject?: Descriptor
}

export interface ImageIndex {
  schemaVersion: 2
  mediaType: string
  manifests: Descriptor[]
  annotations?: Record<string, string>
}

export type ParsedManifest =
  | { kind: 'manifest'; manifest: ImageManifest }
  | { kind: 'index'; index: ImageIndex }

export function sha256Digest(data: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}

/** Throws digestMismatch unless `data` hashes to `digest` (sha256/sha384/sha512). */
export function verifyDigest(data: Uint8Array, digest: string, ctx: RequestContext): void {
  const colon = digest.indexOf(':')
  const algo = digest.slice(0, colon)
  if (!['sha256', 'sha384', 'sha512'].includes(algo)) {
    throw new ManifestError(`cannot verify digest with unsupported algorithm ${algo}`, ctx)
  }
  const actual = `${algo}:` + createHash(algo).update(data).digest('hex')
  if (actual !== digest) throw digestMismatch(digest, actual, ctx)
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function stringMap(v: unknown, where: string, ctx: RequestContext): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined
  if (!isObject(v)) throw new ManifestError(`${where}: annotations must be an object`, ctx)
  const out: Record<string, string> = {}
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw new ManifestError(`${where}: annotation ${JSON.stringify(k)} is not a string`, ctx)
    out[k] = val
  }
  return out
}

function parsePlatformField(v: unknown, where: string, ctx: RequestContext): Platform | undefined {
  if (v === undefined || v === null) return undefined
  if (!isObject(v) || typeof v.os !== 'string' || typeof v.architecture !== 'string') {
    throw new ManifestError(`${where}: platform needs string os and architecture`, ctx)
  }
  const p: Platform = { os: v.os, architecture: v.architecture }
  if (typeof v.variant === 'string' && v.variant !== '') p.variant = v.variant
  if (typeof v['os.version'] === 'string') p['os.version'] = v['os.version']
  if (Array.isArray(v['os.features'])) p['os.features'] = v['os.features'].filter((x): x is string => typeof x === 'string')
  return p
}

export function parseDescriptor(v: unknown, where: string, ctx: RequestContext): Descriptor {
  if (!isObject(v)) throw new ManifestError(`${where}: descriptor must be an object`, ctx)
  if (typeof v.mediaType !== 'string' || v.mediaType === '') throw new ManifestError(`${where}: descriptor has no mediaType`, ctx)
  if (typeof v.digest !== 'string') throw new ManifestError(`${where}: descriptor has no digest`, ctx)
  try { validateDigest(v.digest) } catch (e) { throw new ManifestError(`${where}: ${(e as Error).message}`, ctx) }
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) {
    throw new ManifestError(`${where}: descriptor size must be a non-negative integer`, ctx)
  }
  const d: Descriptor = { mediaType: v.mediaType, digest: v.digest, size: v.size }
  const ann = stringMap(v.annotations, where, ctx)
  if (ann) d.annotations = ann
  if (Array.isArray(v.urls)) d.urls = v.urls.filter((u): u is string => typeof u === 'string')
  const p = parsePlatformField(v.platform, where, ctx)
  if (p) d.platform = p
  if (typeof v.artifactType === 'string') d.artifactType = v.artifactType
  return d
}

/**
 * Parse manifest or index bytes. The media type comes from the body's `mediaType` field, else the
 * Content-Type header, else the shape of the document (OCI allows omitting `mediaType`).
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined, ctx: RequestContext): ParsedManifest {
  let doc: unknown
  try { doc = JSON.parse(bytes.toString('utf8')) } catch (e) {
    throw new ManifestError(`manifest is not valid JSON: ${(e as Error).message}`, ctx, { cause: e })
  }
  if (!isObject(doc)) throw new ManifestError('manifest is not a JSON object', ctx)
  const header = contentType?.split(';')[0]?.trim()
  let mt = typeof doc.mediaType === 'string' ? doc.mediaType : undefined
  if (mt === undefined && (isManifestType(header) || isIndexType(header))) mt = header
  if (mt === undefined) mt = Array.isArray(doc.manifests) ? OCI_INDEX : OCI_MANIFEST
  if (mt === DOCKER_MANIFEST_V1 || mt === DOCKER_MANIFEST_V1_SIGNED || doc.schemaVersion === 1) {
    throw new ManifestError('Docker schema 1 manifests are not supported; re-push the image with a current client', ctx)
  }
  if (doc.schemaVersion !== 2) throw new ManifestError(`unsupported schemaVersion ${JSON.stringify(doc.schemaVersion)}`, ctx)
  const annotations = stringMap(doc.annotations, 'manifest', ctx)
  if (isIndexType(mt)) {
    if (!Array.isArray(doc.manifests)) throw new ManifestError('index has no manifests array', ctx)
    const manifests = doc.manifests.map((m, i) => parseDescriptor(m, `manifests[${i}]`, ctx))
    const index: ImageIndex = { schemaVersion: 2, mediaType: mt, manifests }
    if (annotations) index.annotations = annotations
    return { kind: 'index', index }
  }
  if (!isManifestType(mt)) throw new ManifestError(`unsupported manifest media type ${JSON.stringify(mt)}`, ctx)
  if (!Array.isArray(doc.layers)) throw new ManifestError('manifest has no layers array', ctx)
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: mt,
    config: parseDescriptor(doc.config, 'config', ctx),
    layers: doc.layers.map((l, i) => parseDescriptor(l, `layers[${i}]`, ctx)),
  }
  if (annotations) manifest.annotations = annotations
  if (doc.subject !== undefined) manifest.subject = parseDescriptor(doc.subject, 'subject', ctx)
  return { kind: 'manifest', manifest }
}

// ---- platforms ----------------------------------------------------------------------------

const NODE_ARCH: Record<string, string> = {
  x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x',
  riscv64: 'riscv64', loong64: 'loong64', mips: 'mips', mipsel: 'mipsle',
}

/** The platform this process runs on, in OCI terms. */
export function hostPlatform(): Platform {
  const architecture = NODE_ARCH[process.arch] ?? process.arch
  const os = process.platform === 'win32' ? 'windows' : process.platform
  const p: Platform = { os, architecture }
  if (architecture === 'arm64') p.variant = 'v8'
  if (architecture === 'arm') {
    const v = (process.config.variables as unknown as Record<string, unknown>).arm_version
    p.variant = typeof v === 'string' && v !== '' ? `v${v}` : 'v7'
  }
  return p
}

/** Parse "os/arch[/variant]", e.g. "linux/arm64/v8". */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/')
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new InvalidArgumentError(`invalid platform ${JSON.stringify(s)}: want os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8`)
  }
  const p: Platform = { os: parts[0] as string, architecture: parts[1] as string }
  if (parts[2] !== undefined) p.variant = parts[2]
  return normalizePlatform(p)
}

export function normalizePlatform(p: Platform): Platform {
  const out: Platform = { ...p }
  const aliases: Record<string, string> = { x86_64: 'amd64', x86: '386', i386: '386', aarch64: 'arm64', armhf: 'arm', armel: 'arm' }
  out.architecture = aliases[p.architecture] ?? p.architecture
  if (p.architecture === 'armhf') out.variant = 'v7'
  if (p.architecture === 'armel') out.variant = 'v6'
  return out
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`
}

/** Default variants, so "linux/arm64" matches an entry labelled "linux/arm64/v8". */
function effectiveVariant(p: Platform): string {
  if (p.variant) return p.variant
  if (p.architecture === 'arm64') return 'v8'
  if (p.architecture === 'arm') return 'v7'
  return ''
}

export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false
  const h = normalizePlatform(have)
  return want.os === h.os && want.architecture === h.architecture && effectiveVariant(want) === effectiveVariant(h)
}

/**
 * Pick the manifest for `want` from an index. An exact variant match wins; otherwise, for arm,
 * a lower variant the machine can run (v7 runs v6 and v5). Entries that are attestations
 * (platform unknown/unknown) never match.
 */
export function selectManifest(index: ImageIndex, want: Platform, ctx: RequestContext): Descriptor {
  const candidates = index.manifests.filter((d) => isManifestType(d.mediaType) || isIndexType(d.mediaType))
  const exact = candidates.find((d) => platformMatches(want, d.platform))
  if (exact) return exact
  if (want.architecture === 'arm') {
    const mine = Number(effectiveVariant(want).slice(1))
    const compatible = candidates
      .filter((d) => d.platform && d.platform.os === want.os && normalizePlatform(d.platform).architecture === 'arm')
      .map((d) => ({ d, v: Number(effectiveVariant(normalizePlatform(d.platform as Platform)).slice(1)) }))
      .filter((x) => x.v <= mine)
      .sort((a, b) => b.v - a.v)
    if (compatible[0]) return compatible[0].d
  }
  const available = candidates.map((d) => (d.platform ? formatPlatform(d.platform) : '(no platform)')).join(', ')
  throw new NotFoundError(`no manifest for platform ${formatPlatform(want)} in index (available: ${available || 'none'})${ctx.repository ? ` of ${ctx.registry}/${ctx.repository}` : ''}`)
}

/** The JSON body of an index we push (media types per family). */
export function indexMediaTypeFor(manifestMediaType: string): string {
  return manifestMediaType === DOCKER_MANIFEST ? DOCKER_MANIFEST_LIST : OCI_INDEX
}
