/**
 * One registry as seen by the client: its endpoints (mirrors, then server), the authenticator,
 * and the request pipeline every registry call goes through — build the URL, add the endpoint's
 * configured headers and the Authorization header, answer a 401 once with fresh credentials, and
 * move on to the next endpoint when one fails.
 */
import { NotFoundError } from '../errors.js'
import { AuthError, FetchError, RegistryError, type RequestContext } from './errors.js'
import type { Authenticator } from './auth.js'
import { credentialHost, type Capability, type Endpoint } from './hosts.js'
import { header, headerAll, type HttpMethod, type HttpRequest, type HttpResponse, type Transport } from './transport.js'

export interface Operation {
  capability: Capability
  method: HttpMethod
  /** Path below the API root, starting with "/": "/library/busybox/manifests/latest". */
  path: string
  query?: Record<string, string>
  headers?: Record<string, string>
  body?: Buffer | string
  idempotent?: boolean
  scopes: string[]
  ctx: RequestContext
  signal?: AbortSignal | undefined
  maxBodyBytes?: number
  bodyLimit?: HttpRequest['bodyLimit']
  onBytes?: ((n: number) => void) | undefined
  onRequest?: (() => void) | undefined
}

export class RegistrySession {
  constructor(
    readonly registry: string,
    readonly endpoints: readonly Endpoint[],
    readonly transport: Transport,
    readonly auth: Authenticator,
  ) {}

  endpointsFor(cap: Capability): Endpoint[] {
    const eps = this.endpoints.filter((e) => e.capabilities.has(cap))
    if (eps.length === 0) throw new RegistryError(`no endpoint of registry ${this.registry} has the ${cap} capability (check hosts.toml)`, { registry: this.registry })
    return eps
  }

  url(ep: Endpoint, path: string, query?: Record<string, string>): URL {
    const u = new URL(ep.base.href + path)
    if (ep.isMirror) u.searchParams.set('ns', this.registry)
    for (const [k, v] of Object.entries(query ?? {})) u.searchParams.set(k, v)
    return u
  }

  /** One endpoint, with the 401 → credentials → retry-once dance. */
  async requestOn(ep: Endpoint, op: Operation, absolute?: URL): Promise<HttpResponse> {
    const url = absolute ?? this.url(ep, op.path, op.query)
    const ctx: RequestContext = { registry: this.registry, ...op.ctx, path: url.pathname }
    // Only the endpoint's own origin gets its TLS settings and its credentials.
    const sameOrigin = url.origin === ep.base.origin
    const tls = sameOrigin ? ep.tls : undefined
    // Credentials by the endpoint's own host: a mirror gets the mirror's, never the registry's.
    const credHost = credentialHost(ep)
    let authz = sameOrigin ? await this.auth.authorize(ep.base.origin, credHost, op.scopes, ctx, tls) : undefined
    for (let round = 0; ; round++) {
      const headers: Record<string, string> = { ...(sameOrigin ? ep.headers : {}), ...op.headers }
      if (authz) headers.authorization = authz
      op.onRequest?.()
      const res = await this.transport.send({
        method: op.method, url, headers, body: op.body, idempotent: op.idempotent, tls, ctx,
        signal: op.signal, maxBodyBytes: op.maxBodyBytes, bodyLimit: op.bodyLimit, onBytes: op.onBytes,
      } as Parameters<Transport['send']>[0])
      if (res.status !== 401 || !sameOrigin) {
        if (res.status === 403 && sameOrigin) {
          throw new AuthError(`access denied (HTTP 403)${registryMessage(res)}`, ctx, 403)
        }
        return res
      }
      // Two tries after the first 401: a cached or freshly issued token may already be stale.
      if (round >= 2 || (round >= 1 && !authz?.startsWith('Bearer '))) {
        throw new AuthError(`registry rejected the credentials${await this.auth.describeUser(credHost)} (HTTP 401 after authenticating)${registryMessage(res)}`, ctx, 401)
      }
      authz = await this.auth.onUnauthorized(ep.base.origin, credHost, op.scopes, headerAll(res, 'www-authenticate'), authz, ctx, tls)
    }
  }

  /**
   * Try the endpoints with `op.capability` in order. A response counts as an answer when
   * `isAnswer` says so (default: anything but 404 and 5xx); otherwise, and on errors, the next
   * endpoint is tried. The last endpoint's response or error is what the caller sees.
   */
  async request(op: Operation, isAnswer: (res: HttpResponse) => boolean = defaultAnswer): Promise<{ res: HttpResponse; endpoint: Endpoint }> {
    const eps = this.endpointsFor(op.capability)
    let lastErr: unknown
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[i] as Endpoint
      const last = i === eps.length - 1
      try {
        const res = await this.requestOn(ep, op)
        if (last || isAnswer(res)) return { res, endpoint: ep }
      } catch (e) {
        op.signal?.throwIfAborted()
        if (last) throw e
        lastErr = e
      }
    }
    throw lastErr ?? new FetchError('no endpoint answered', op.ctx)
  }
}

export function defaultAnswer(res: HttpResponse): boolean {
  return res.status !== 404 && res.status < 500
}

/** The registry's error message from its JSON error body, if any, prefixed for appending. */
export function registryMessage(res: HttpResponse): string {
  const ct = header(res, 'content-type') ?? ''
  if (!ct.includes('json') || res.body.length === 0) return ''
  try {
    const j = JSON.parse(res.body.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> }
    const e = j.errors?.[0]
    if (!e) return ''
    return `: ${[e.code, e.message].filter(Boolean).join(' ')}`.slice(0, 300)
  } catch { return '' }
}

/** Map an unexpected status to the right error class. */
export function statusError(res: HttpResponse, what: string, ctx: RequestContext): Error {
  const msg = `${what}: HTTP ${res.status}${registryMessage(res)}`
  if (res.status === 404) return new NotFoundError(`${msg} (${[ctx.registry && `registry ${ctx.registry}`, ctx.repository && `repository ${ctx.repository}`, ctx.digest && `digest ${ctx.digest}`].filter(Boolean).join(', ')})`)
  if (res.status === 401 || res.status === 403) return new AuthError(msg, ctx, res.status)
  if (res.status === 429 || res.status >= 500) return new FetchError(msg, ctx, res.status)
  return new RegistryError(msg, ctx, res.status)
}
