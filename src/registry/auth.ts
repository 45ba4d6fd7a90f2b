/**
 * Registry authentication: HTTP Basic, and Bearer tokens per the Docker token spec.
 *
 * A 401 carries `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`. We ask the realm for a
 * token (GET ?service=&scope=… with Basic credentials, or anonymous; POST grant_type=refresh_token
 * when we hold an identity token), cache it per (realm, service, scopes) until `issued_at +
 * expires_in` (default 60 s) minus a margin, and fetch a fresh one when the registry answers 401
 * to a token we sent. Concurrent requests needing the same token share one fetch.
 *
 * Credentials are looked up by the host of the endpoint that asked (`credHost`: the mirror's own
 * host for a mirror), and tokens are cached per host too, so one endpoint's secret never travels
 * to another. A token realm over plain http is refused for an https endpoint: the credentials
 * (and the token) would cross the network in clear for a registry the user reached over TLS.
 */
import { AuthError, type RequestContext } from './errors.js'
import type { Credential, CredentialProvider } from './credentials.js'
import { header, type TlsOptions, type Transport } from './transport.js'

export interface Challenge {
  scheme: string
  params: Record<string, string>
}

/** Parse one or more WWW-Authenticate header values into challenges. */
export function parseChallenges(values: string[]): Challenge[] {
  const out: Challenge[] = []
  for (const v of values) {
    let i = 0
    let cur: Challenge | undefined
    while (i < v.length) {
      while (i < v.length && (v[i] === ' ' || v[i] === ',')) i++
      const tokM = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(v.slice(i))
      if (!tokM) break
      const tok = tokM[0]
      i += tok.length
      let j = i
      while (j < v.length && v[j] === ' ') j++
      if (v[j] === '=') {
        // auth-param: name=token | name="quoted"
        j++
        while (j < v.length && v[j] === ' ') j++
        let val = ''
        if (v[j] === '"') {
          j++
          while (j < v.length && v[j] !== '"') {
            if (v[j] === '\\' && j + 1 < v.length) j++
            val += v[j]
            j++
          }
          j++
        } else {
          const m = /^[^,\s]*/.exec(v.slice(j))
          val = m ? m[0] : ''
          j += val.length
        }
        if (cur) cur.params[tok.toLowerCase()] = val
        i = j
      } else {
        cur = { scheme: tok.toLowerCase(), params: {} }
        out.push(cur)
      }
    }
  }
  return out
}

export function repositoryScope(repository: string, actions: string[]): string {
  return `repository:${repository}:${actions.join(',')}`
}

interface CachedToken { token: string; expiresAt: number }

export interface AuthenticatorOptions {
  /** Clock in ms, injectable for tests. */
  now?: () => number
  clientId?: string
}

/** What an endpoint told us about its auth on its last 401. */
interface EndpointAuth { challenge: Challenge }

export class Authenticator {
  private readonly endpoints = new Map<string, EndpointAuth>()
  private readonly tokens = new Map<string, CachedToken>()
  private readonly inflight = new Map<string, Promise<CachedToken>>()
  private readonly now: () => number
  private readonly clientId: string
  /** Tokens fetched from realms, for tests and stats. */
  tokenFetches = 0

  constructor(private readonly transport: Transport, private readonly creds: CredentialProvider, opts: AuthenticatorOptions = {}) {
    this.now = opts.now ?? Date.now
    this.clientId = opts.clientId ?? 'stargzd'
  }

  /**
   * The Authorization header for a request to `origin`, or undefined when the endpoint has not
   * asked for auth yet. May fetch a token when the cached one expired.
   */
  async authorize(origin: string, credHost: string, scopes: string[], ctx: RequestContext, tls?: TlsOptions): Promise<string | undefined> {
    const ep = this.endpoints.get(origin)
    if (!ep) return undefined
    return this.headerFor(origin, ep.challenge, credHost, scopes, ctx, tls, undefined)
  }

  /**
   * Handle a 401: remember the challenge and return a header to retry with. `sent` is the
   * Authorization header the refused request carried (its token is dropped from the cache).
   * Throws AuthError when there is nothing better to send.
   */
  async onUnauthorized(origin: string, credHost: string, scopes: string[], wwwAuthenticate: string[], sent: string | undefined, ctx: RequestContext, tls?: TlsOptions): Promise<string> {
    const challenges = parseChallenges(wwwAuthenticate)
    const challenge = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic')
    if (!challenge) {
      throw new AuthError(`registry answered 401 without a usable WWW-Authenticate challenge${wwwAuthenticate.length ? ` (${wwwAuthenticate.join('; ').slice(0, 200)})` : ''}`, ctx, 401)
    }
    this.endpoints.set(origin, { challenge })
    const allScopes = [...scopes]
    const extra = challenge.params.scope
    if (extra) for (const s of extra.split(' ')) if (s && !allScopes.includes(s)) allScopes.push(s)
    if (challenge.scheme === 'basic') {
      const h = await this.headerFor(origin, challenge, credHost, allScopes, ctx, tls, undefined)
      if (h === undefined) throw new AuthError(`registry requires authentication and no credentials are configured for ${credHost} (docker login, or auths in the Docker config)`, ctx, 401)
      if (h === sent) throw new AuthError(`registry rejected the credentials${await this.describeUser(credHost)}`, ctx, 401)
      return h
    }
    const h = await this.headerFor(origin, challenge, credHost, allScopes, ctx, tls, sent)
    if (h === undefined) throw new AuthError('registry requires a bearer token but the challenge has no realm', ctx, 401)
    return h
  }

  /** " for user \"name\"" when credentials with a user name are configured, else "". */
  async describeUser(credHost: string): Promise<string> {
    const c = await this.creds.get(credHost).catch(() => undefined)
    return c?.username ? ` for user ${JSON.stringify(c.username)}` : ''
  }

  private async headerFor(origin: string, ch: Challenge, credHost: string, scopes: string[], ctx: RequestContext, tls: TlsOptions | undefined, refused: string | undefined): Promise<string | undefined> {
    if (ch.scheme === 'basic') {
      const c = await this.creds.get(credHost)
      if (!c || c.username === undefined || c.password === undefined) return undefined
      return 'Basic ' + Buffer.from(`${c.username}:${c.password}`).toString('base64')
    }
    const realm = ch.params.realm
    if (!realm) return undefined
    const service = ch.params.service ?? ''
    const key = JSON.stringify([credHost, realm, service, [...scopes].sort()])
    const cached = this.tokens.get(key)
    if (cached && `Bearer ${cached.token}` === refused) this.tokens.delete(key)
    else if (cached && cached.expiresAt > this.now()) return `Bearer ${cached.token}`
    let p = this.inflight.get(key)
    if (!p) {
      p = this.fetchToken(origin, realm, service, scopes, credHost, ctx, tls).finally(() => this.inflight.delete(key))
      this.inflight.set(key, p)
    }
    const t = await p
    this.tokens.set(key, t)
    return `Bearer ${t.token}`
  }

  private async fetchToken(origin: string, realm: string, service: string, scopes: string[], credHost: string, ctx: RequestContext, tls: TlsOptions | undefined): Promise<CachedToken> {
    let url: URL
    try { url = new URL(realm) } catch { throw new AuthError(`token realm ${JSON.stringify(realm)} is not a URL`, ctx) }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new AuthError(`token realm ${JSON.stringify(realm)} is not an http(s) URL`, ctx)
    if (url.protocol === 'http:' && origin.startsWith('https:')) {
      throw new AuthError(`token realm ${url.origin}${url.pathname} is plain http for the https registry endpoint ${origin}: refusing to send credentials or accept a token in clear`, ctx, 401)
    }
    const cred: Credential | undefined = await this.creds.get(credHost)
    const headers: Record<string, string> = { accept: 'application/json' }
    let res
    this.tokenFetches++
    const tokenCtx: RequestContext = { ...ctx, path: url.pathname }
    if (cred?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.identityToken, client_id: this.clientId })
      if (service) form.set('service', service)
      if (scopes.length) form.set('scope', scopes.join(' '))
      headers['content-type'] = 'application/x-www-form-urlencoded'
      res = await this.transport.send({ method: 'POST', url, headers, body: form.toString(), idempotent: true, ctx: tokenCtx, tls, maxBodyBytes: 1 << 20 })
    } else {
      if (service) url.searchParams.set('service', service)
      for (const s of scopes) url.searchParams.append('scope', s)
      if (cred?.username !== undefined && cred.password !== undefined) {
        url.searchParams.set('account', cred.username)
        headers.authorization = 'Basic ' + Buffer.from(`${cred.username}:${cred.password}`).toString('base64')
      }
      res = await this.transport.send({ method: 'GET', url, headers, ctx: tokenCtx, tls, maxBodyBytes: 1 << 20 })
    }
    if (res.status === 401 || res.status === 403) {
      const who = cred?.username ? ` for user ${JSON.stringify(cred.username)}` : cred?.identityToken ? ' for the identity token' : ' (anonymous)'
      throw new AuthError(`token server ${url.origin}${url.pathname} refused access${who} with HTTP ${res.status}`, ctx, res.status)
    }
    if (res.status !== 200) {
      throw new AuthError(`token server ${url.origin}${url.pathname} answered HTTP ${res.status}${header(res, 'content-type')?.includes('json') ? `: ${res.body.toString('utf8').slice(0, 200)}` : ''}`, ctx, res.status)
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown }
    try { body = JSON.parse(res.body.toString('utf8')) as typeof body } catch {
      throw new AuthError(`token server ${url.origin}${url.pathname} returned a body that is not JSON`, ctx, res.status)
    }
    const token = typeof body.token === 'string' && body.token ? body.token : typeof body.access_token === 'string' ? body.access_token : ''
    if (!token) throw new AuthError(`token server ${url.origin}${url.pathname} returned no token`, ctx, res.status)
    const lifetimeS = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60
    const issued = typeof body.issued_at === 'string' ? Date.parse(body.issued_at) : NaN
    // Our clock, not the server's, decides: a skewed issued_at must not make every token stale.
    const start = Number.isNaN(issued) || Math.abs(issued - this.now()) > 5 * 60_000 ? this.now() : issued
    const margin = Math.min(10_000, lifetimeS * 100)
    return { token, expiresAt: start + lifetimeS * 1000 - margin }
  }
}
