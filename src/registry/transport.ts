/**
 * HTTP for the registry client: one undici Agent per TLS configuration (each keeps a keep-alive
 * pool per origin), connect/headers/body timeouts, and bounded retries with exponential backoff
 * and full jitter for idempotent requests on connection errors, timeouts, 429 and 5xx, honouring
 * Retry-After. Bodies are read into one Buffer (range reads and manifests are bounded in size).
 */
import { setTimeout as sleepMs } from 'node:timers/promises'
import { Agent, request as undiciRequest, type Dispatcher } from 'undici'
import { FetchError, RegistryError, RegistryTimeoutError, type RequestContext } from './errors.js'
import { LIBRARY_DEFAULTS } from '../config/defaults.js'

export interface TlsOptions {
  ca?: Buffer[]
  cert?: Buffer
  key?: Buffer
  skipVerify?: boolean
}

export interface TransportOptions {
  connectTimeoutMs?: number
  headersTimeoutMs?: number
  bodyTimeoutMs?: number
  keepAliveTimeoutMs?: number
  /** Connections per origin; undici queues requests beyond this. */
  connectionsPerOrigin?: number
  /** Retries after the first attempt (so maxRetries + 1 attempts in all). */
  maxRetries?: number
  backoffBaseMs?: number
  backoffMaxMs?: number
  /** Retry-After values above this are clamped, so a server cannot stall us for hours. */
  retryAfterMaxMs?: number
  userAgent?: string
  /** Injected for tests. */
  random?: () => number
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
}

export type HttpMethod = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE'

export interface HttpRequest {
  method: HttpMethod
  url: URL
  headers?: Record<string, string>
  body?: Buffer | string
  tls?: TlsOptions | undefined
  /** Default: true for GET, HEAD and PUT (manifest PUTs are idempotent; uploads pass false). */
  idempotent?: boolean
  ctx: RequestContext
  signal?: AbortSignal | undefined
  /** Refuse 2xx bodies longer than this (manifests, token responses). */
  maxBodyBytes?: number
  /** Called with each body chunk's size as it arrives, for counters. */
  onBytes?: ((n: number) => void) | undefined
}

export interface HttpResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  url: URL
}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504])
const RETRY_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_REQ_RETRY',
])
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
const ERROR_BODY_LIMIT = 64 * 1024

export function header(res: { headers: HttpResponse['headers'] }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()]
  return Array.isArray(v) ? v[0] : v
}

export function headerAll(res: { headers: HttpResponse['headers'] }, name: string): string[] {
  const v = res.headers[name.toLowerCase()]
  if (v === undefined) return []
  return Array.isArray(v) ? v : [v]
}

function errorCode(e: unknown): string | undefined {
  let cur: unknown = e
  for (let i = 0; i < 4 && cur; i++) {
    const c = (cur as { code?: unknown }).code
    if (typeof c === 'string') return c
    cur = (cur as { cause?: unknown }).cause
  }
  return undefined
}

function isTlsError(code: string | undefined): boolean {
  return code !== undefined && (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code.includes('CERT') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'SELF_SIGNED_CERT_IN_CHAIN')
}

/** Retry-After in milliseconds (delta-seconds or HTTP-date), or undefined. */
export function parseRetryAfter(v: string | undefined, now = Date.now()): number | undefined {
  if (v === undefined) return undefined
  const s = v.trim()
  if (/^\d+$/.test(s)) return Number(s) * 1000
  const t = Date.parse(s)
  if (Number.isNaN(t)) return undefined
  return Math.max(0, t - now)
}

function tlsKey(tls: TlsOptions | undefined): string {
  if (!tls) return 'default'
  const h = (b: Buffer | undefined): string => (b ? b.toString('base64').slice(-32) + b.length : '')
  return JSON.stringify([tls.skipVerify === true, (tls.ca ?? []).map(h), h(tls.cert), h(tls.key)])
}

export class Transport {
  private readonly agents = new Map<string, Agent>()
  private closed = false
  readonly opts: Required<Omit<TransportOptions, 'userAgent'>> & { userAgent: string }

  constructor(opts: TransportOptions = {}) {
    this.opts = {
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      headersTimeoutMs: opts.headersTimeoutMs ?? 30_000,
      bodyTimeoutMs: opts.bodyTimeoutMs ?? LIBRARY_DEFAULTS.registry.bodyTimeoutMs,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 30_000,
      connectionsPerOrigin: opts.connectionsPerOrigin ?? 64,
      maxRetries: opts.maxRetries ?? LIBRARY_DEFAULTS.registry.maxRetries,
      backoffBaseMs: opts.backoffBaseMs ?? LIBRARY_DEFAULTS.registry.backoffBaseMs,
      backoffMaxMs: opts.backoffMaxMs ?? LIBRARY_DEFAULTS.registry.backoffMaxMs,
      retryAfterMaxMs: opts.retryAfterMaxMs ?? 30_000,
      userAgent: opts.userAgent ?? 'stargzd/0.1',
      random: opts.random ?? Math.random,
      sleep: opts.sleep ?? ((ms, signal) => sleepMs(ms, undefined, signal ? { signal } : undefined)),
    }
  }

  private agent(tls: TlsOptions | undefined): Agent {
    if (this.closed) throw new FetchError('registry transport is closed', {})
    const key = tlsKey(tls)
    let a = this.agents.get(key)
    if (!a) {
      const connect: Record<string, unknown> = { timeout: this.opts.connectTimeoutMs }
      if (tls?.ca && tls.ca.length > 0) connect.ca = tls.ca
      if (tls?.cert) connect.cert = tls.cert
      if (tls?.key) connect.key = tls.key
      if (tls?.skipVerify) connect.rejectUnauthorized = false
      a = new Agent({
        connect,
        keepAliveTimeout: this.opts.keepAliveTimeoutMs,
        headersTimeout: this.opts.headersTimeoutMs,
        bodyTimeout: this.opts.bodyTimeoutMs,
        connections: this.opts.connectionsPerOrigin,
      })
      this.agents.set(key, a)
    }
    return a
  }

  /** Delay before retry number `attempt` (0-based): full jitter over an exponential cap. */
  backoff(attempt: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, this.opts.retryAfterMaxMs)
    const cap = Math.min(this.opts.backoffMaxMs, this.opts.backoffBaseMs * 2 ** attempt)
    return Math.floor(this.opts.random() * cap)
  }

  /**
   * Send a request, retrying what is safe to retry. Returns the final response whatever its
   * status (callers map statuses to errors); throws FetchError/RegistryTimeoutError when the
   * network failed on every attempt.
   */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const idempotent = req.idempotent ?? (req.method === 'GET' || req.method === 'HEAD' || req.method === 'PUT')
    for (let attempt = 0; ; attempt++) {
      req.signal?.throwIfAborted()
      let retryAfter: number | undefined
      try {
        const res = await this.once(req)
        if (!RETRY_STATUS.has(res.status) || !idempotent || attempt >= this.opts.maxRetries) return res
        retryAfter = parseRetryAfter(header(res, 'retry-after'))
      } catch (e) {
        if (req.signal?.aborted) throw req.signal.reason
        if (e instanceof RegistryError) throw e
        const code = errorCode(e)
        if (isTlsError(code)) {
          throw new FetchError(`TLS error talking to ${req.url.host}: ${(e as Error).message} (configure a CA in hosts.toml, or use --insecure)`, req.ctx, undefined, { cause: e })
        }
        // A refused connection never reached the server, so even non-idempotent requests are safe.
        const retryable = RETRY_CODES.has(code ?? '') && (idempotent || code === 'ECONNREFUSED')
        if (!retryable || attempt >= this.opts.maxRetries) throw this.networkError(req, e, attempt + 1)
      }
      await this.opts.sleep(this.backoff(attempt, retryAfter), req.signal)
    }
  }

  private networkError(req: HttpRequest, e: unknown, attempts: number): Error {
    const code = errorCode(e)
    const what = `${req.method} ${req.url.origin}${req.url.pathname}`
    const msg = `${what} failed after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${(e as Error)?.message ?? String(e)}${code ? ` [${code}]` : ''}`
    if (TIMEOUT_CODES.has(code ?? '')) return new RegistryTimeoutError(msg, req.ctx, { cause: e })
    return new FetchError(msg, req.ctx, undefined, { cause: e })
  }

  private async once(req: HttpRequest): Promise<HttpResponse> {
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent, ...req.headers }
    const options: Parameters<typeof undiciRequest>[1] = {
      method: req.method,
      headers,
      dispatcher: this.agent(req.url.protocol === 'https:' ? req.tls : undefined) as Dispatcher,
      // undici's default 64 KiB body buffer halves throughput on large range reads (measured
      // 230 → 460 MB/s on a loaded 2-core box); chunks are copied out at once, so little is held.
      highWaterMark: 4 << 20,
    }
    if (req.body !== undefined) options.body = req.body
    if (req.signal) options.signal = req.signal
    const res = await undiciRequest(req.url, options)
    const out: HttpResponse = { status: res.statusCode, headers: res.headers, body: Buffer.alloc(0), url: req.url }
    if (req.method === 'HEAD') { await res.body.dump(); return out }
    const ok = res.statusCode >= 200 && res.statusCode < 300
    const limit = ok ? req.maxBodyBytes : ERROR_BODY_LIMIT
    const declared = Number(header(out, 'content-length'))
    if (ok && limit !== undefined && Number.isFinite(declared) && declared > limit) {
      await res.body.dump()
      throw new RegistryError(`response body of ${declared} bytes exceeds the limit of ${limit}`, req.ctx, res.statusCode)
    }
    // Preallocate when the length is known: a 1 GiB range read then costs one copy per chunk.
    const pre = Number.isSafeInteger(declared) && declared >= 0 && (ok || declared <= ERROR_BODY_LIMIT) ? Buffer.allocUnsafe(declared) : undefined
    const chunks: Buffer[] = []
    let n = 0
    for await (const c of res.body as AsyncIterable<Buffer>) {
      req.onBytes?.(c.length)
      if (pre && n + c.length <= pre.length) c.copy(pre, n)
      else if (!ok && n >= ERROR_BODY_LIMIT) continue
      else chunks.push(c)
      n += c.length
      if (ok && limit !== undefined && n > limit) {
        res.body.destroy()
        throw new RegistryError(`response body exceeds the limit of ${limit} bytes`, req.ctx, res.statusCode)
      }
    }
    if (pre) {
      if (n !== pre.length) {
        const err = new Error(`body length ${n} differs from Content-Length ${pre.length}`) as Error & { code: string }
        err.code = 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'
        throw err
      }
      out.body = pre
    } else {
      out.body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)
    }
    return out
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const agents = [...this.agents.values()]
    this.agents.clear()
    await Promise.all(agents.map((a) => a.close().catch(() => a.destroy())))
  }
}
