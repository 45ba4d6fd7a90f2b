/**
 * RegistryClient: the one entry point the rest of stargzd uses for registries.
 *
 *   const c = new RegistryClient({ plainHttp: true })
 *   const img = await c.resolve('127.0.0.1:5000/app:latest')   // manifest, config, layers
 *   const blob = await c.blob(img.reference, img.layers[0].digest, img.layers[0].size)
 *   await c.close()
 */
import { FailedPreconditionError, NotFoundError } from '../errors.js'
import { Authenticator, repositoryScope } from './auth.js'
import { DockerConfigCredentials, type CredentialProvider } from './credentials.js'
import { ManifestError, type RequestContext } from './errors.js'
import { loadEndpoints, type HostsOptions } from './hosts.js'
import { RegistryBlob, type RegistryBlobOptions } from './blob.js'
import {
  hostPlatform, parseManifest, parsePlatform, selectManifest, sha256Digest, verifyDigest,
  type Descriptor, type ImageIndex, type ImageManifest, type ParsedManifest, type Platform,
} from './manifest.js'
import { MANIFEST_ACCEPT, isIndexType } from './media-types.js'
import { pushBlob, pushManifest, blobExists, type PushBlobOptions, type PushBlobResult } from './push.js'
import { formatReference, manifestReference, parseReference, withDigest, type Reference } from './reference.js'
import { RegistrySession, statusError } from './session.js'
import { Transport, header, type TransportOptions } from './transport.js'

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
const MAX_CONFIG_BYTES = 16 * 1024 * 1024
/** Nested indexes are legal but rare; bound them. */
const MAX_INDEX_DEPTH = 4

export interface RegistryClientOptions extends HostsOptions {
  /** Default platform for indexes: "os/arch[/variant]" or a Platform. Default: this machine. */
  platform?: string | Platform | undefined
  credentials?: CredentialProvider
  transport?: TransportOptions
  blob?: RegistryBlobOptions
  /** Clock for token expiry, injectable for tests. */
  now?: () => number
}

export interface FetchedManifest {
  digest: string
  mediaType: string
  bytes: Buffer
  parsed: ParsedManifest
}

export interface ResolvedImage {
  reference: Reference
  /** "registry/repository:tag@digest" of the platform manifest. */
  name: string
  /** Digest of the image manifest (the platform-specific one when the reference is an index). */
  digest: string
  /** Digest of the index the manifest was picked from, if any. */
  indexDigest?: string
  mediaType: string
  platform: Platform | undefined
  manifest: ImageManifest
  configDescriptor: Descriptor
  config: Record<string, unknown>
  layers: Descriptor[]
}

export interface ImagePushLayer {
  data: Buffer
  mediaType: string
  annotations?: Record<string, string>
}

export interface PushImageOptions extends Omit<PushBlobOptions, 'signal'> {
  manifestMediaType?: string
  configMediaType?: string
  annotations?: Record<string, string>
}

function refOf(ref: string | Reference): Reference {
  return typeof ref === 'string' ? parseReference(ref) : ref
}

export class RegistryClient {
  readonly transport: Transport
  private readonly sessions = new Map<string, Promise<RegistrySession>>()
  private readonly auth: Authenticator
  private readonly platform: Platform
  private closed = false

  constructor(private readonly opts: RegistryClientOptions = {}) {
    this.transport = new Transport(opts.transport)
    const creds = opts.credentials ?? new DockerConfigCredentials()
    this.auth = new Authenticator(this.transport, creds, opts.now ? { now: opts.now } : {})
    this.platform = typeof opts.platform === 'string' ? parsePlatform(opts.platform) : opts.platform ?? hostPlatform()
  }

  /** Tokens fetched so far (for tests and --stats). */
  get tokenFetches(): number { return this.auth.tokenFetches }

  session(registry: string): Promise<RegistrySession> {
    if (this.closed) throw new FailedPreconditionError('registry client is closed')
    let s = this.sessions.get(registry)
    if (!s) {
      s = loadEndpoints(registry, this.opts).then((eps) => new RegistrySession(registry, eps, this.transport, this.auth))
      s.catch(() => this.sessions.delete(registry))
      this.sessions.set(registry, s)
    }
    return s
  }

  /** GET a manifest or index by tag or digest, verifying its digest. */
  async fetchManifest(refIn: string | Reference, signal?: AbortSignal): Promise<FetchedManifest> {
    const ref = refOf(refIn)
    const session = await this.session(ref.registry)
    const target = manifestReference(ref)
    const ctx: RequestContext = { registry: ref.registry, repository: ref.repository }
    if (ref.digest) ctx.digest = ref.digest
    const { res } = await session.request({
      capability: ref.digest ? 'pull' : 'resolve', method: 'GET', path: `/${ref.repository}/manifests/${target}`,
      headers: { accept: MANIFEST_ACCEPT }, scopes: [repositoryScope(ref.repository, ['pull'])], ctx, signal,
      maxBodyBytes: MAX_MANIFEST_BYTES,
    })
    if (res.status === 404) throw new NotFoundError(`manifest ${target} not found in ${ref.registry}/${ref.repository}`)
    if (res.status !== 200) throw statusError(res, `fetching manifest ${target} failed`, ctx)
    let digest: string
    if (ref.digest) {
      verifyDigest(res.body, ref.digest, ctx)
      digest = ref.digest
    } else {
      digest = sha256Digest(res.body)
      const claimed = header(res, 'docker-content-digest')
      if (claimed && claimed.startsWith('sha256:') && claimed !== digest) {
        throw new ManifestError(`registry says manifest ${target} has digest ${claimed}, but its bytes hash to ${digest}`, ctx)
      }
    }
    const parsed = parseManifest(res.body, header(res, 'content-type'), { ...ctx, digest })
    const mediaType = parsed.kind === 'index' ? parsed.index.mediaType : parsed.manifest.mediaType
    return { digest, mediaType, bytes: res.body, parsed }
  }

  /** Resolve a reference to one image manifest (picking the platform from indexes) and its config. */
  async resolve(refIn: string | Reference, opts: { platform?: string | Platform; signal?: AbortSignal } = {}): Promise<ResolvedImage> {
    const ref = refOf(refIn)
    const want = opts.platform === undefined ? this.platform : typeof opts.platform === 'string' ? parsePlatform(opts.platform) : opts.platform
    let fetched = await this.fetchManifest(ref, opts.signal)
    let indexDigest: string | undefined
    let platform: Platform | undefined
    for (let depth = 0; fetched.parsed.kind === 'index'; depth++) {
      if (depth >= MAX_INDEX_DEPTH) throw new ManifestError(`indexes nested deeper than ${MAX_INDEX_DEPTH}`, { registry: ref.registry, repository: ref.repository, digest: fetched.digest })
      indexDigest ??= fetched.digest
      const index: ImageIndex = fetched.parsed.index
      const d = selectManifest(index, want, { registry: ref.registry, repository: ref.repository, digest: fetched.digest })
      platform = d.platform
      fetched = await this.fetchManifest(withDigest(ref, d.digest), opts.signal)
      if (fetched.parsed.kind === 'manifest' && d.size !== fetched.bytes.length) {
        throw new ManifestError(`index says manifest ${d.digest} has ${d.size} bytes, got ${fetched.bytes.length}`, { registry: ref.registry, repository: ref.repository, digest: d.digest })
      }
    }
    const manifest = fetched.parsed.manifest
    const config = await this.fetchConfig(ref, manifest.config, opts.signal)
    if (!platform && typeof config.os === 'string' && typeof config.architecture === 'string') {
      platform = { os: config.os, architecture: config.architecture }
      if (typeof config.variant === 'string' && config.variant) platform.variant = config.variant
    }
    const out: ResolvedImage = {
      reference: ref,
      name: formatReference({ ...ref, digest: fetched.digest }),
      digest: fetched.digest,
      mediaType: fetched.mediaType,
      platform,
      manifest,
      configDescriptor: manifest.config,
      config,
      layers: manifest.layers,
    }
    if (indexDigest) out.indexDigest = indexDigest
    return out
  }

  private async fetchConfig(ref: Reference, d: Descriptor, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const ctx: RequestContext = { registry: ref.registry, repository: ref.repository, digest: d.digest }
    if (d.size > MAX_CONFIG_BYTES) throw new ManifestError(`config blob of ${d.size} bytes is over the ${MAX_CONFIG_BYTES}-byte limit`, ctx)
    const bytes = await this.fetchBlob(ref, d.digest, d.size, signal)
    try {
      const j = JSON.parse(bytes.toString('utf8')) as unknown
      if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new Error('not an object')
      return j as Record<string, unknown>
    } catch (e) {
      throw new ManifestError(`image config is not a JSON object: ${(e as Error).message}`, ctx, { cause: e })
    }
  }

  /** A range-readable blob. Pass the descriptor size when known to skip the HEAD. */
  async blob(refIn: string | Reference, digest: string, size?: number): Promise<RegistryBlob> {
    const ref = refOf(refIn)
    const session = await this.session(ref.registry)
    return RegistryBlob.open(session, ref.repository, digest, { ...this.opts.blob, size })
  }

  /**
   * A range-readable blob opened with one suffix-range GET of its last `tailBytes` (size from
   * Content-Range, no HEAD); reads inside that tail are answered from memory. For lazy layers,
   * whose footer and TOC sit at the end.
   */
  async blobWithTail(refIn: string | Reference, digest: string, tailBytes: number, signal?: AbortSignal): Promise<RegistryBlob> {
    const ref = refOf(refIn)
    const session = await this.session(ref.registry)
    return RegistryBlob.openWithTail(session, ref.repository, digest, tailBytes, { ...this.opts.blob }, signal)
  }

  /** A whole blob, verified against its digest. */
  async fetchBlob(refIn: string | Reference, digest: string, size?: number, signal?: AbortSignal): Promise<Buffer> {
    const b = await this.blob(refIn, digest, size)
    try { return await b.read(0, b.size, signal) } finally { await b.close() }
  }

  async blobExists(refIn: string | Reference, digest: string): Promise<boolean> {
    const ref = refOf(refIn)
    return blobExists(await this.session(ref.registry), ref.repository, digest)
  }

  async pushBlob(refIn: string | Reference, data: Buffer, opts: PushBlobOptions = {}): Promise<PushBlobResult> {
    const ref = refOf(refIn)
    return pushBlob(await this.session(ref.registry), ref.repository, data, opts)
  }

  /** PUT a manifest/index under the reference's tag (or digest); returns its digest. */
  async pushManifest(refIn: string | Reference, body: Buffer, mediaType: string): Promise<string> {
    const ref = refOf(refIn)
    const target = ref.tag ?? sha256Digest(body)
    return pushManifest(await this.session(ref.registry), ref.repository, target, body, mediaType)
  }

  /** Push config + layers and an image manifest; returns the manifest descriptor. */
  async pushImage(refIn: string | Reference, config: Buffer, layers: ImagePushLayer[], opts: PushImageOptions = {}): Promise<Descriptor> {
    const ref = refOf(refIn)
    const manifestType = opts.manifestMediaType ?? 'application/vnd.oci.image.manifest.v1+json'
    const docker = manifestType.includes('docker')
    const configType = opts.configMediaType ?? (docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json')
    const cfg = await this.pushBlob(ref, config, opts)
    const layerDescs: Descriptor[] = []
    for (const l of layers) {
      const r = await this.pushBlob(ref, l.data, opts)
      const d: Descriptor = { mediaType: l.mediaType, digest: r.digest, size: r.size }
      if (l.annotations) d.annotations = l.annotations
      layerDescs.push(d)
    }
    const doc: Record<string, unknown> = {
      schemaVersion: 2,
      mediaType: manifestType,
      config: { mediaType: configType, digest: cfg.digest, size: cfg.size },
      layers: layerDescs,
    }
    if (opts.annotations) doc.annotations = opts.annotations
    const body = Buffer.from(JSON.stringify(doc))
    const digest = await this.pushManifest(ref, body, manifestType)
    return { mediaType: manifestType, digest, size: body.length }
  }

  /** Push an index over already-pushed manifests (each descriptor needs a platform). */
  async pushIndex(refIn: string | Reference, manifests: Descriptor[], mediaType = 'application/vnd.oci.image.index.v1+json'): Promise<Descriptor> {
    if (!isIndexType(mediaType)) throw new ManifestError(`${mediaType} is not an index media type`, {})
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests }))
    const digest = await this.pushManifest(refIn, body, mediaType)
    return { mediaType, digest, size: body.length }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.sessions.clear()
    await this.transport.close()
  }
}
