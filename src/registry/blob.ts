/**
 * A registry blob as a RangeSource: `read(offset, length)` is one HTTP Range GET.
 *
 * Registries often answer blob GETs with a redirect to object storage (S3, GCS, a CDN). The
 * redirected URL is remembered and reused, without our registry credentials, until it expires —
 * by its own signature parameters when it has them, else after `redirectTtlMs` — or until storage
 * answers 401/403, when we go back to the registry for a fresh one.
 *
 * `readRanges` asks for several ranges in one multi-range request (multipart/byteranges). Servers
 * that refuse (400/416), ignore it (200 with the whole blob) or answer with something else make
 * us fall back to one request per range, for the rest of this blob's life.
 *
 * Identical concurrent requests share one fetch; `stats()` counts requests and body bytes.
 */
import { InvalidArgumentError, NotFoundError } from '../errors.js'
import type { RangeSource } from '../estargz/types.js'
import { FetchError, RegistryError, type RequestContext } from './errors.js'
import type { Endpoint } from './hosts.js'
import { verifyDigest } from './manifest.js'
import { MultipartError, multipartBoundary, parseContentRange, parseMultipartByteranges } from './multipart.js'
import { repositoryScope } from './auth.js'
import { statusError, type RegistrySession } from './session.js'
import { SingleFlight } from './singleflight.js'
import { header, type BodyLimit, type HttpResponse } from './transport.js'

export interface ByteRange { offset: number; length: number }

export interface BlobStats {
  /** Body bytes received, including retried attempts and discarded full-blob answers. */
  bytesFetched: number
  /** HTTP requests sent for this blob (a retried request counts once). */
  requests: number
  /** Reads that joined an identical read already in flight. */
  deduplicated: number
  /** Whether the server was seen to refuse multi-range requests. */
  multiRangeUnsupported: boolean
}

export interface RegistryBlobOptions {
  /** Known size (from a digest-verified descriptor); otherwise found with HEAD. */
  size?: number | undefined
  /** Lifetime of a redirected URL that carries no expiry of its own. Default 60 s. */
  redirectTtlMs?: number
  /** Most ranges in one multi-range request. Default 32. */
  maxRangesPerRequest?: number
  /** Requests in flight when falling back to single ranges. Default 8. */
  fallbackConcurrency?: number
  now?: () => number
}

interface Redirect { url: URL; expiresAt: number }

const MAX_REDIRECTS = 5
/**
 * A server that ignores Range answers 200 with the blob from byte 0. We read it only as far as the
 * range we asked for ends, and only when that is at most this far past the range's own length;
 * further in, reading the skipped prefix would cost more than the read is worth, so we refuse.
 */
export const IGNORED_RANGE_MAX_SKIP = 8 << 20
/** Allowance for the part headers and delimiters of a multipart/byteranges answer, per part. */
const MULTIPART_OVERHEAD_PER_PART = 1024

/** 206: exactly what was asked. 200 (Range ignored): the prefix up to the range's end, or nothing. */
function rangeBodyLimit(offset: number, length: number, blobSize: number): (status: number) => BodyLimit {
  return (status) => {
    if (status !== 200) return { maxBytes: length, overflow: 'refuse' }
    if (offset === 0 && length === blobSize) return { maxBytes: blobSize, overflow: 'refuse' }
    return { maxBytes: offset <= IGNORED_RANGE_MAX_SKIP ? offset + length : 0, overflow: 'truncate' }
  }
}

/** Expiry encoded in a pre-signed URL (S3 v4, GCS, CloudFront/S3 v2, Azure SAS), in ms. */
export function signedUrlExpiry(u: URL): number | undefined {
  const q = u.searchParams
  const amzDate = q.get('X-Amz-Date') ?? q.get('X-Goog-Date')
  const amzExpires = q.get('X-Amz-Expires') ?? q.get('X-Goog-Expires')
  if (amzDate && amzExpires && /^\d{8}T\d{6}Z$/.test(amzDate)) {
    const iso = `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`
    return Date.parse(iso) + Number(amzExpires) * 1000
  }
  const expires = q.get('Expires')
  if (expires && /^\d+$/.test(expires)) return Number(expires) * 1000
  const se = q.get('se')
  if (se && !Number.isNaN(Date.parse(se))) return Date.parse(se)
  return undefined
}

export class RegistryBlob implements RangeSource {
  private redirect: Redirect | undefined
  private endpoint: Endpoint | undefined
  private readonly flights = new SingleFlight<Buffer[]>()
  private readonly counters = { bytesFetched: 0, requests: 0 }
  private multiRangeUnsupported = false
  private readonly redirectTtlMs: number
  private readonly maxRanges: number
  private readonly fallbackConcurrency: number
  private readonly now: () => number
  private closed = false
  /** The blob's last bytes, fetched by openWithTail(); reads inside them are answered from memory. */
  private tail: { offset: number; bytes: Buffer } | undefined

  private constructor(
    private readonly session: RegistrySession,
    readonly repository: string,
    readonly digest: string,
    readonly size: number,
    opts: RegistryBlobOptions,
  ) {
    this.redirectTtlMs = opts.redirectTtlMs ?? 60_000
    this.maxRanges = opts.maxRangesPerRequest ?? 32
    this.fallbackConcurrency = opts.fallbackConcurrency ?? 8
    this.now = opts.now ?? Date.now
  }

  static async open(session: RegistrySession, repository: string, digest: string, opts: RegistryBlobOptions = {}): Promise<RegistryBlob> {
    if (opts.size !== undefined) return new RegistryBlob(session, repository, digest, opts.size, opts)
    const probe = new RegistryBlob(session, repository, digest, 0, opts)
    const size = await probe.headSize()
    const blob = new RegistryBlob(session, repository, digest, size, opts)
    blob.adopt(probe)
    return blob
  }

  /**
   * Open with one suffix-range GET (`Range: bytes=-N`) instead of a HEAD: its Content-Range gives
   * the blob's size and its body the last N bytes — an eStargz footer and, for most layers, the
   * whole TOC — which later reads inside them get from memory. A lazy layer's open is then one
   * round trip. A server that ignores the range (200) is read only up to N bytes: the whole blob
   * if it is that small, else we fall back to HEAD.
   */
  static async openWithTail(session: RegistrySession, repository: string, digest: string, tailBytes: number, opts: RegistryBlobOptions = {}, signal?: AbortSignal): Promise<RegistryBlob> {
    if (!Number.isSafeInteger(tailBytes) || tailBytes <= 0) throw new InvalidArgumentError(`tail of ${tailBytes} bytes`)
    const probe = new RegistryBlob(session, repository, digest, 0, opts)
    const range = `-${tailBytes}`
    const ctx = probe.ctx(range)
    const res = await probe.fetch(range, signal, () => ({ maxBytes: tailBytes, overflow: 'truncate' }))
    let size: number
    let tail: { offset: number; bytes: Buffer } | undefined
    if (res.status === 206) {
      const cr = parseContentRange(header(res, 'content-range'))
      if (!cr || cr.total === undefined || cr.end !== cr.total - 1 || res.truncated || res.body.length !== cr.end - cr.start + 1) {
        throw new FetchError(`suffix range answered with Content-Range ${JSON.stringify(header(res, 'content-range'))} and ${res.body.length} bytes`, ctx, 206)
      }
      size = cr.total
      tail = { offset: cr.start, bytes: res.body }
    } else if (res.status === 200 && !res.truncated) {
      verifyDigest(res.body, digest, ctx)
      size = res.body.length
      tail = { offset: 0, bytes: res.body }
    } else if (res.status === 200) {
      size = opts.size ?? await probe.headSize()
    } else if (res.status === 404) {
      throw new NotFoundError(`blob ${digest} not found in ${session.registry}/${repository}`)
    } else {
      throw statusError(res, 'blob suffix-range read failed', ctx)
    }
    if (opts.size !== undefined && opts.size !== size) throw new FetchError(`blob is ${size} bytes, its descriptor says ${opts.size}`, ctx, res.status)
    const blob = new RegistryBlob(session, repository, digest, size, opts)
    blob.adopt(probe)
    blob.tail = tail
    return blob
  }

  private adopt(other: RegistryBlob): void {
    this.redirect = other.redirect
    this.endpoint = other.endpoint
    this.counters.bytesFetched += other.counters.bytesFetched
    this.counters.requests += other.counters.requests
  }

  stats(): BlobStats {
    return { ...this.counters, deduplicated: this.flights.shared, multiRangeUnsupported: this.multiRangeUnsupported }
  }

  private ctx(range?: string): RequestContext {
    const c: RequestContext = { registry: this.session.registry, repository: this.repository, digest: this.digest }
    if (range !== undefined) c.range = range
    return c
  }

  private get path(): string { return `/${this.repository}/blobs/${this.digest}` }

  private async headSize(): Promise<number> {
    const ctx = this.ctx()
    const { res, endpoint } = await this.session.request({
      capability: 'pull', method: 'HEAD', path: this.path, scopes: [repositoryScope(this.repository, ['pull'])], ctx,
      onRequest: () => { this.counters.requests++ },
    })
    if (res.status === 200) {
      const len = Number(header(res, 'content-length'))
      this.endpoint = endpoint
      if (Number.isSafeInteger(len) && len >= 0) return len
    } else if (res.status < 300 || res.status >= 400) {
      throw statusError(res, 'blob HEAD failed', ctx)
    }
    // Redirected (pre-signed URLs are often GET-only) or no length: one byte tells the total.
    this.endpoint = endpoint
    const r = await this.fetch('0-0', undefined, (status) => ({ maxBytes: status === 206 ? 1 : 0, overflow: status === 206 ? 'refuse' : 'truncate' }))
    const cr = parseContentRange(header(r, 'content-range'))
    if (r.status === 206 && cr?.total !== undefined) return cr.total
    const len = Number(header(r, 'content-length'))
    if (r.status === 200 && Number.isSafeInteger(len) && len >= 0) return len
    throw new RegistryError('cannot determine blob size: neither HEAD nor a ranged GET reported it', ctx, r.status)
  }

  /** GET the blob (optionally a Range), through a live redirect when we have one. */
  private async fetch(range: string | undefined, signal: AbortSignal | undefined, bodyLimit: (status: number) => BodyLimit): Promise<HttpResponse> {
    if (this.closed) throw new FetchError('blob is closed', this.ctx(range))
    const headers: Record<string, string> = range === undefined ? {} : { range: `bytes=${range}` }
    const ctx = this.ctx(range)
    const onBytes = (n: number): void => { this.counters.bytesFetched += n }
    const onRequest = (): void => { this.counters.requests++ }
    const r = this.redirect
    if (r && r.expiresAt > this.now()) {
      onRequest()
      const res = await this.session.transport.send({ method: 'GET', url: r.url, headers, ctx, signal, onBytes, bodyLimit })
      if (res.status !== 401 && res.status !== 403 && res.status !== 404) return res
      // Storage refused the (likely expired) URL: ask the registry for a fresh one.
    }
    this.redirect = undefined
    const op = {
      capability: 'pull' as const, method: 'GET' as const, path: this.path, headers, ctx, signal, onBytes, onRequest, bodyLimit,
      scopes: [repositoryScope(this.repository, ['pull'])],
    }
    let res: HttpResponse
    if (this.endpoint) res = await this.session.requestOn(this.endpoint, op)
    else {
      const got = await this.session.request(op)
      res = got.res
      this.endpoint = got.endpoint
    }
    for (let hop = 0; res.status >= 300 && res.status < 400 && res.status !== 304; hop++) {
      const loc = header(res, 'location')
      if (!loc || hop >= MAX_REDIRECTS) throw new RegistryError(loc ? 'too many redirects' : `redirect (HTTP ${res.status}) without Location`, ctx, res.status)
      const url = new URL(loc, res.url)
      this.redirect = { url, expiresAt: Math.min(signedUrlExpiry(url) ?? Infinity, this.now() + this.redirectTtlMs) - 1000 }
      onRequest()
      res = await this.session.transport.send({ method: 'GET', url, headers, ctx, signal, onBytes, bodyLimit })
    }
    return res
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new InvalidArgumentError(`read of ${length} bytes at offset ${offset} is outside blob ${this.digest} (size ${this.size})`)
    }
  }

  /** Bytes of the blob's end held in memory since openWithTail (0 without). */
  get tailLength(): number {
    return this.tail?.bytes.length ?? 0
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.checkRange(offset, length)
    if (length === 0) return Buffer.alloc(0)
    const t = this.tail
    if (t && offset >= t.offset && offset + length <= t.offset + t.bytes.length) return t.bytes.subarray(offset - t.offset, offset - t.offset + length)
    // A read that ends inside the tail (a TOC bigger than the tail) fetches only what comes before it.
    if (t && offset < t.offset && offset + length > t.offset && offset + length <= t.offset + t.bytes.length) {
      const head = await this.read(offset, t.offset - offset, signal)
      return Buffer.concat([head, t.bytes.subarray(0, offset + length - t.offset)])
    }
    const [buf] = await this.flights.do(`${offset}+${length}`, async (s) => [await this.readOne(offset, length, s)], signal)
    return buf as Buffer
  }

  private async readOne(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const whole = offset === 0 && length === this.size
    const range = `${offset}-${offset + length - 1}`
    const ctx = this.ctx(range)
    const res = await this.fetch(range, signal, rangeBodyLimit(offset, length, this.size))
    let out: Buffer
    if (res.status === 206) {
      // The body is capped at `length` already; the range must be exactly the one asked for.
      const cr = parseContentRange(header(res, 'content-range'))
      if (!cr || cr.start !== offset || cr.end !== offset + length - 1 || res.body.length !== length) {
        throw new FetchError(`server answered with Content-Range ${JSON.stringify(header(res, 'content-range'))} and ${res.body.length} bytes, not the range asked for`, ctx, 206)
      }
      out = res.body
    } else if (res.status === 200) {
      // The server ignored Range and sends the blob from byte 0.
      if (!res.truncated && res.body.length === this.size) {
        verifyDigest(res.body, this.digest, ctx)
        return res.body.subarray(offset, offset + length)
      }
      if (res.truncated && res.body.length === offset + length) return res.body.subarray(offset)
      const why = offset > IGNORED_RANGE_MAX_SKIP ? `; refusing to download ${offset} bytes before the range` : `, ${res.body.length} bytes of a blob of ${this.size}`
      throw new FetchError(`server ignored Range and answered 200${why}`, ctx, 200)
    } else if (res.status === 404) {
      throw new NotFoundError(`blob ${this.digest} not found in ${this.session.registry}/${this.repository}`)
    } else {
      throw statusError(res, 'blob range read failed', ctx)
    }
    if (whole) verifyDigest(out, this.digest, ctx)
    return out
  }

  /** Read several ranges; results are in the order asked. Overlapping ranges are fine. */
  async readRanges(ranges: readonly ByteRange[], signal?: AbortSignal): Promise<Buffer[]> {
    for (const r of ranges) this.checkRange(r.offset, r.length)
    const spans = coalesce(ranges.filter((r) => r.length > 0))
    const key = 'm' + spans.map((s) => `${s.offset}+${s.length}`).join(',')
    const spanBufs = spans.length === 0 ? [] : await this.flights.do(key, (s) => this.fetchSpans(spans, s), signal)
    return ranges.map((r) => {
      if (r.length === 0) return Buffer.alloc(0)
      const i = spans.findIndex((s) => s.offset <= r.offset && r.offset + r.length <= s.offset + s.length)
      const s = spans[i] as ByteRange
      return (spanBufs[i] as Buffer).subarray(r.offset - s.offset, r.offset - s.offset + r.length)
    })
  }

  private async fetchSpans(spans: ByteRange[], signal: AbortSignal): Promise<Buffer[]> {
    if (spans.length === 1) return [await this.readOne((spans[0] as ByteRange).offset, (spans[0] as ByteRange).length, signal)]
    const out: Buffer[] = new Array<Buffer>(spans.length)
    const groups: number[][] = []
    for (let i = 0; i < spans.length; i += this.maxRanges) groups.push(spans.slice(i, i + this.maxRanges).map((_, j) => i + j))
    await Promise.all(groups.map(async (g) => {
      const got = this.multiRangeUnsupported ? undefined : await this.tryMultiRange(g.map((i) => spans[i] as ByteRange), signal)
      if (got) { g.forEach((i, j) => { out[i] = got[j] as Buffer }); return }
      await mapLimit(g, this.fallbackConcurrency, async (i) => {
        const s = spans[i] as ByteRange
        out[i] = await this.readOne(s.offset, s.length, signal)
      })
    }))
    return out
  }

  /** One multi-range request; undefined when the server would not do it (caller falls back). */
  private async tryMultiRange(group: ByteRange[], signal: AbortSignal): Promise<Buffer[] | undefined> {
    const range = group.map((s) => `${s.offset}-${s.offset + s.length - 1}`).join(',')
    const ctx = this.ctx(range)
    // Spans are sorted and disjoint: a multipart answer holds at most the bytes from the first
    // to the last, plus part headers; a merged single part is within the same bound.
    const first = group[0] as ByteRange
    const last = group[group.length - 1] as ByteRange
    const cap = last.offset + last.length - first.offset + MULTIPART_OVERHEAD_PER_PART * (group.length + 1)
    const res = await this.fetch(range, signal, (status) => status === 200
      ? { maxBytes: Math.min(cap, this.size), overflow: 'truncate' }
      : { maxBytes: cap, overflow: 'refuse' })
    const refuse = (): undefined => { this.multiRangeUnsupported = true; return undefined }
    if (res.status === 400 || res.status === 416 || res.status === 501) return refuse()
    if (res.status === 200) {
      // Range ignored: usable only when the whole blob fitted in what we were willing to read.
      if (res.truncated || res.body.length !== this.size) return refuse()
      verifyDigest(res.body, this.digest, ctx)
      this.multiRangeUnsupported = true
      return group.map((s) => res.body.subarray(s.offset, s.offset + s.length))
    }
    if (res.status !== 206) throw statusError(res, 'blob multi-range read failed', ctx)
    let parts: Array<{ start: number; data: Buffer }>
    const boundary = multipartBoundary(header(res, 'content-type'))
    if (boundary) {
      try { parts = parseMultipartByteranges(res.body, boundary) } catch (e) {
        if (e instanceof MultipartError) return refuse()
        throw e
      }
    } else {
      // A single part: fine if the server merged our ranges into one that covers them all.
      const cr = parseContentRange(header(res, 'content-range'))
      if (!cr || res.body.length !== cr.end - cr.start + 1) return refuse()
      parts = [{ start: cr.start, data: res.body }]
    }
    const bufs: Buffer[] = []
    for (const s of group) {
      const p = parts.find((p) => p.start <= s.offset && s.offset + s.length <= p.start + p.data.length)
      if (!p) return refuse()
      bufs.push(p.data.subarray(s.offset - p.start, s.offset - p.start + s.length))
    }
    return bufs
  }

  async close(): Promise<void> {
    this.closed = true
    this.redirect = undefined
    this.tail = undefined
  }
}

/** Sort and merge overlapping or touching ranges. */
export function coalesce(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset)
  const out: ByteRange[] = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset)
    } else out.push({ offset: r.offset, length: r.length })
  }
  return out
}

async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++] as T)
  })
  await Promise.all(workers)
}
