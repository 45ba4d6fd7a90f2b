/**
 * Pushing to a registry (distribution spec "push" workflow):
 *
 *   HEAD  /v2/<repo>/blobs/<digest>                    exists? 200 : 404
 *   POST  /v2/<repo>/blobs/uploads/?mount=<d>&from=<r>  201 mounted | 202 Location (upload instead)
 *   POST  /v2/<repo>/blobs/uploads/                     202 Location: session URL
 *   PATCH <Location>  Content-Range: <first>-<last>     202 Location (chunked; repeat)
 *   PUT   <Location>?digest=<d> [body]                  201 (monolithic: the whole body here)
 *   PUT   /v2/<repo>/manifests/<tag|digest>             201 Docker-Content-Digest
 */
import { digestMismatch, RegistryError, type RequestContext } from './errors.js'
import { repositoryScope } from './auth.js'
import type { Endpoint } from './hosts.js'
import { sha256Digest } from './manifest.js'
import { statusError, type RegistrySession } from './session.js'
import { header, type HttpResponse } from './transport.js'

export interface PushBlobOptions {
  /** Upload in PATCH chunks of this many bytes; default: monolithic. */
  chunkSize?: number
  /** Try a cross-repository mount from this repository (same registry) first. */
  mountFrom?: string
  signal?: AbortSignal
}

export interface PushBlobResult {
  digest: string
  size: number
  /** How the blob got there. */
  via: 'exists' | 'mounted' | 'uploaded'
}

function pushEndpoint(session: RegistrySession): Endpoint {
  return session.endpointsFor('push')[0] as Endpoint
}

export async function blobExists(session: RegistrySession, repository: string, digest: string, signal?: AbortSignal): Promise<boolean> {
  const ctx: RequestContext = { registry: session.registry, repository, digest }
  const res = await session.requestOn(pushEndpoint(session), {
    capability: 'push', method: 'HEAD', path: `/${repository}/blobs/${digest}`, ctx, signal,
    scopes: [repositoryScope(repository, ['pull', 'push'])],
  })
  if (res.status === 200) return true
  if (res.status === 404) return false
  throw statusError(res, 'blob existence check failed', ctx)
}

function location(res: HttpResponse, ctx: RequestContext): URL {
  const loc = header(res, 'location')
  if (!loc) throw new RegistryError(`upload answer HTTP ${res.status} has no Location`, ctx, res.status)
  return new URL(loc, res.url)
}

export async function pushBlob(session: RegistrySession, repository: string, data: Buffer, opts: PushBlobOptions = {}): Promise<PushBlobResult> {
  const digest = sha256Digest(data)
  const ctx: RequestContext = { registry: session.registry, repository, digest }
  const ep = pushEndpoint(session)
  const scopes = [repositoryScope(repository, ['pull', 'push'])]
  if (await blobExists(session, repository, digest, opts.signal)) return { digest, size: data.length, via: 'exists' }
  const base = { capability: 'push' as const, ctx, scopes, signal: opts.signal, idempotent: false }
  let start: HttpResponse
  if (opts.mountFrom && opts.mountFrom !== repository) {
    start = await session.requestOn(ep, {
      ...base, method: 'POST', path: `/${repository}/blobs/uploads/`, query: { mount: digest, from: opts.mountFrom },
      scopes: [...scopes, repositoryScope(opts.mountFrom, ['pull'])],
    })
    if (start.status === 201) return { digest, size: data.length, via: 'mounted' }
  } else {
    start = await session.requestOn(ep, { ...base, method: 'POST', path: `/${repository}/blobs/uploads/` })
  }
  if (start.status !== 202) throw statusError(start, 'starting blob upload failed', ctx)
  let loc = location(start, ctx)
  const chunk = opts.chunkSize && opts.chunkSize > 0 && opts.chunkSize < data.length ? opts.chunkSize : undefined
  let final: Buffer | undefined = data
  if (chunk) {
    for (let off = 0; off < data.length; off += chunk) {
      const part = data.subarray(off, Math.min(data.length, off + chunk))
      const res = await session.requestOn(ep, {
        ...base, method: 'PATCH', path: '', body: part,
        headers: { 'content-type': 'application/octet-stream', 'content-range': `${off}-${off + part.length - 1}`, 'content-length': String(part.length) },
      }, loc)
      if (res.status !== 202) throw statusError(res, `uploading chunk at ${off} failed`, ctx)
      loc = location(res, ctx)
    }
    final = undefined
  }
  const put = new URL(loc.href)
  put.searchParams.set('digest', digest)
  const res = await session.requestOn(ep, {
    ...base, method: 'PUT', path: '', body: final ?? Buffer.alloc(0),
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(final?.length ?? 0) },
  }, put)
  if (res.status !== 201) throw statusError(res, 'completing blob upload failed', ctx)
  const got = header(res, 'docker-content-digest')
  if (got && got !== digest) throw digestMismatch(digest, got, ctx)
  return { digest, size: data.length, via: 'uploaded' }
}

/** PUT a manifest or index under a tag (or its digest); returns its digest. */
export async function pushManifest(session: RegistrySession, repository: string, reference: string, body: Buffer, mediaType: string, signal?: AbortSignal): Promise<string> {
  const digest = sha256Digest(body)
  const ctx: RequestContext = { registry: session.registry, repository, digest }
  const res = await session.requestOn(pushEndpoint(session), {
    capability: 'push', method: 'PUT', path: `/${repository}/manifests/${reference}`, body, ctx, signal,
    headers: { 'content-type': mediaType }, scopes: [repositoryScope(repository, ['pull', 'push'])],
  })
  if (res.status !== 201 && res.status !== 200) throw statusError(res, `pushing manifest ${reference} failed`, ctx)
  const got = header(res, 'docker-content-digest')
  if (got && got !== digest) throw digestMismatch(digest, got, ctx)
  return digest
}
