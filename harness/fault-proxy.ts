/**
 * An HTTP proxy on 127.0.0.1 in front of a test registry that injects faults on demand:
 * connection resets mid-body, bursts of 5xx/429 (with Retry-After), stalled bodies, redirects
 * of blob GETs to a temporary "storage" URL it serves itself (403 once expired), and refusal of
 * multi-range requests in several styles, and hostile bodies (Range ignored, a Content-Length that
 * lies, endless error bodies, bodies trickled a byte at a time). Every request is logged for
 * assertions, including whether the client hung up before the answer was complete.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse, type IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import { randomBytes } from 'node:crypto'

export type MultiRangeRefusal = false | '400' | '416' | 'full' | 'first'

export interface Faults {
  /** Next N blob GETs send half their body, then the connection is reset. */
  resetMidBody: number
  /** Next `count` requests matching `path` are answered with `status`. */
  statusBurst: { status: number; count: number; retryAfter?: string; path?: RegExp } | undefined
  /** Next N blob GETs send headers and half the body, then never finish. */
  stallBody: number
  refuseMultiRange: MultiRangeRefusal
  /** Blob GETs are answered with a 307 to /_storage/<id>/…; `expiresParam` adds ?Expires=. */
  redirect: { expiresParam?: number } | false
  /** Next N blob GETs have their Range header dropped (the registry answers 200, whole blob). */
  ignoreRange: number
  /** Next N blob GETs claim this Content-Length, send the real body, then reset. */
  claimLength: { value: string; count: number } | undefined
  /** Next N blob GETs are answered 400 with a body that never ends. */
  endlessErrorBody: number
  /** Next N blob GETs send their body one byte every 20 ms. */
  trickleBody: number
}

export interface LoggedRequest {
  method: string; path: string; query: string; range: string | undefined; status: number; headers: IncomingHttpHeaders; fault?: string
  /** The client closed the connection before the answer was complete. */
  clientClosed?: boolean
  /** Body bytes written (for the endless and trickled faults). */
  bytesSent?: number
}

export interface FaultProxy {
  host: string
  url: string
  faults: Faults
  log: LoggedRequest[]
  /** Redirect URLs handed out. */
  redirectsIssued: number
  /** Make every storage URL handed out so far answer 403 from now on (new ones work). */
  expireRedirects(): void
  clearLog(): void
  close(): Promise<void>
}

const BLOB_GET = /^\/v2\/.+\/blobs\/sha256:[a-f0-9]{64}$/

function forward(upstream: URL, method: string, path: string, headers: IncomingHttpHeaders, body: Buffer | undefined):
  Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const h = { ...headers, host: upstream.host }
    delete h.connection
    const req = httpRequest({ host: upstream.hostname, port: upstream.port, method, path, headers: h }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

export async function startFaultProxy(upstreamUrl: string): Promise<FaultProxy> {
  const upstream = new URL(upstreamUrl)
  const sockets = new Set<Socket>()
  const storage = new Map<string, { path: string; auth: string | undefined; expired: boolean }>()
  const proxy: FaultProxy = {
    host: '', url: '', log: [], redirectsIssued: 0,
    faults: { resetMidBody: 0, statusBurst: undefined, stallBody: 0, refuseMultiRange: false, redirect: false, ignoreRange: 0, claimLength: undefined, endlessErrorBody: 0, trickleBody: 0 },
    expireRedirects: () => { for (const s of storage.values()) s.expired = true },
    clearLog: () => { proxy.log.length = 0 },
    close: () => new Promise((r) => {
      for (const s of sockets) s.destroy()
      server.close(() => r())
    }),
  }

  const send = (req: IncomingMessage, res: ServerResponse, status: number, headers: IncomingHttpHeaders, body: Buffer, fault?: string): void => {
    const [p, q] = (req.url ?? '').split('?')
    const entry: LoggedRequest = { method: req.method ?? '', path: p ?? '', query: q ?? '', range: req.headers.range, status, headers: req.headers }
    if (fault) entry.fault = fault
    proxy.log.push(entry)
    res.on('close', () => { if (!res.writableFinished) entry.clientClosed = true })
    const h = { ...headers }
    delete h['transfer-encoding']
    delete h.connection
    if (req.method !== 'HEAD' && status !== 304) h['content-length'] = String(body.length)
    const f = proxy.faults
    const isBlobGet = req.method === 'GET' && (BLOB_GET.test(entry.path) || entry.path.startsWith('/_storage/'))
    if (isBlobGet && status < 300 && f.claimLength && f.claimLength.count > 0) {
      f.claimLength.count--
      entry.fault = 'claim-length'
      h['content-length'] = f.claimLength.value
      res.writeHead(status, h as Record<string, string | string[]>)
      res.write(body, () => res.socket?.destroy())
      return
    }
    res.writeHead(status, h as Record<string, string | string[]>)
    if (isBlobGet && status < 300 && body.length > 1 && f.trickleBody > 0) {
      f.trickleBody--
      entry.fault = 'trickle'
      entry.bytesSent = 0
      const timer = setInterval(() => {
        const i = entry.bytesSent ?? 0
        if (res.destroyed || i >= body.length) { clearInterval(timer); if (!res.destroyed) res.end(); return }
        res.write(body.subarray(i, i + 1))
        entry.bytesSent = i + 1
      }, 20)
      res.on('close', () => clearInterval(timer))
      return
    }
    if (isBlobGet && status < 300 && body.length > 1 && f.resetMidBody > 0) {
      f.resetMidBody--
      entry.fault = 'reset'
      res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy())
      return
    }
    if (isBlobGet && status < 300 && body.length > 1 && f.stallBody > 0) {
      f.stallBody--
      entry.fault = 'stall'
      res.write(body.subarray(0, body.length >> 1))
      return
    }
    res.end(req.method === 'HEAD' ? undefined : body)
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const f = proxy.faults
      const path = (req.url ?? '/').split('?')[0] ?? '/'
      const body = await readBody(req)
      const burst = f.statusBurst
      if (burst && burst.count > 0 && (burst.path ?? /\/blobs\//).test(path)) {
        burst.count--
        const h: IncomingHttpHeaders = { 'content-type': 'application/json' }
        if (burst.retryAfter !== undefined) h['retry-after'] = burst.retryAfter
        send(req, res, burst.status, h, Buffer.from('{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}'), `status-${burst.status}`)
        return
      }
      if (f.endlessErrorBody > 0 && req.method === 'GET' && BLOB_GET.test(path)) {
        f.endlessErrorBody--
        const entry: LoggedRequest = { method: 'GET', path, query: '', range: req.headers.range, status: 400, headers: req.headers, fault: 'endless-error', bytesSent: 0 }
        proxy.log.push(entry)
        res.on('close', () => { entry.clientClosed = true })
        res.writeHead(400, { 'content-type': 'text/plain' })
        const block = Buffer.alloc(64 * 1024, 0x78)
        const pump = (): void => {
          while (!res.destroyed) {
            entry.bytesSent = (entry.bytesSent ?? 0) + block.length
            if (!res.write(block)) { res.once('drain', pump); return }
          }
        }
        pump()
        return
      }
      const headers = { ...req.headers }
      if (f.ignoreRange > 0 && req.method === 'GET' && BLOB_GET.test(path) && headers.range !== undefined) {
        f.ignoreRange--
        delete headers.range
      }
      if (path.startsWith('/_storage/')) {
        const id = path.split('/')[2] ?? ''
        const s = storage.get(id)
        if (!s || s.expired) { send(req, res, 403, { 'content-type': 'application/xml' }, Buffer.from('<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>'), 'expired'); return }
        if (s.auth) headers.authorization = s.auth
        return await proxyOn(req, res, s.path, headers, body)
      }
      if (f.redirect && req.method === 'GET' && BLOB_GET.test(path)) {
        const id = randomBytes(8).toString('hex')
        storage.set(id, { path, auth: req.headers.authorization, expired: false })
        proxy.redirectsIssued++
        const loc = `/_storage/${id}${path.slice(path.lastIndexOf('/'))}` + (f.redirect.expiresParam !== undefined ? `?Expires=${f.redirect.expiresParam}&Signature=x` : '')
        send(req, res, 307, { location: `${proxy.url}${loc}` }, Buffer.alloc(0), 'redirect')
        return
      }
      return await proxyOn(req, res, req.url ?? '/', headers, body)
    })().catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(502).end(String(e))
      else res.destroy()
    })
  })

  async function proxyOn(req: IncomingMessage, res: ServerResponse, path: string, headers: IncomingHttpHeaders, body: Buffer): Promise<void> {
    const f = proxy.faults
    const range = headers.range
    let fault: string | undefined
    if (range && range.includes(',') && f.refuseMultiRange) {
      fault = `multirange-${f.refuseMultiRange}`
      if (f.refuseMultiRange === '400' || f.refuseMultiRange === '416') {
        send(req, res, Number(f.refuseMultiRange), { 'content-type': 'text/plain' }, Buffer.from('multi-range not supported'), fault)
        return
      }
      if (f.refuseMultiRange === 'full') delete headers.range
      if (f.refuseMultiRange === 'first') headers.range = range.split(',')[0]
    }
    const up = await forward(upstream, req.method ?? 'GET', path, headers, req.method === 'GET' || req.method === 'HEAD' ? undefined : body)
    const h = { ...up.headers }
    // Rewrite upstream Locations (upload sessions) so clients keep talking to the proxy.
    if (typeof h.location === 'string' && h.location.startsWith(upstream.origin)) h.location = proxy.url + h.location.slice(upstream.origin.length)
    send(req, res, up.status, h, up.body, fault)
  }

  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const addr = server.address()
  proxy.host = `127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`
  proxy.url = `http://${proxy.host}`
  return proxy
}
