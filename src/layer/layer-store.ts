/**
 * What a lazy layer needs to be served again without its registry, kept beside the chunk cache
 * (`<root>/layers/`) and keyed by TOC digest: the layer descriptor (blob digest, size, media type,
 * footer facts) and the exact verified TOC JSON bytes. The resolver writes a record the first time
 * a layer's TOC verifies from the registry and, on the next open (a restart), reads it instead of
 * fetching footer + TOC — the registry is then asked only for chunks the cache does not hold.
 *
 *   const store = await LayerStore.open(dir)            // sweeps temp files of a crashed write
 *   store.put(record)                                   // background write: temp file, fsync, rename
 *   const rec = await store.get(tocDigest, blobDigest)  // undefined: none; throws: damaged
 *   await store.close()                                 // waits for writes in flight
 *
 * A record is local state, and local state is input like any other: get() refuses a record whose
 * header is malformed, whose lengths do not add up, whose footer facts are impossible for the
 * blob, or whose TOC bytes do not hash to the digest it is filed under — a TocError (rule
 * `layer-record`) that the resolver logs before it drops the record and goes to the registry.
 * Even an accepted record's TOC goes through the same parse and validation as one from a blob
 * (toc-read.ts tocFromJson), and every chunk is still verified against its TOC digest when read.
 *
 * File format (`<hex of the TOC digest>.layer`): one line `stargzd-layer v1`, one line of header
 * JSON, then the TOC JSON bytes. When the metadata workstream's index store (src/index) lands,
 * the TOC part can become its compact index; the header stays.
 */
import { createHash, randomBytes } from 'node:crypto'
import { access, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { TocError, errorMessage } from '../errors.js'
import type { Footer, FooterKind } from '../estargz/types.js'
import { childLogger, silentLogger, type Logger } from '../reader/logger.js'

export interface LayerRecord {
  /** sha256 of the TOC JSON: the key. */
  tocDigest: string
  /** Compressed blob digest (the chunk cache's key and the registry's name for the blob). */
  blobDigest: string
  /** Blob size in bytes: reads of chunks need it, and with it the blob opens without a request. */
  size: number
  /** Derived from the footer kind (the snapshot labels carry no media type). */
  mediaType: string
  footer: Footer
  /** The verified TOC JSON bytes. */
  json: Buffer
}

const MAGIC = 'stargzd-layer v1'
const SUFFIX = '.layer'
const TEMP_PREFIX = '.tmp-'
const DIGEST = /^sha256:([0-9a-f]{64})$/
const FOOTER_KINDS: ReadonlySet<FooterKind> = new Set<FooterKind>(['estargz', 'legacy', 'zstd', 'external'])

/** The layer media type a footer kind implies. */
export function mediaTypeOf(kind: FooterKind): string {
  return kind === 'zstd' ? 'application/vnd.oci.image.layer.v1.tar+zstd' : 'application/vnd.oci.image.layer.v1.tar+gzip'
}

interface Header {
  tocDigest: string
  blobDigest: string
  size: number
  mediaType: string
  footer: Footer
  tocBytes: number
}

export class LayerStore {
  private readonly writes = new Set<Promise<void>>()
  private readonly log: Logger
  private closed = false

  private constructor(readonly dir: string, logger: Logger) {
    this.log = childLogger(logger, { component: 'layer-store' })
  }

  /** Create the directory if needed and remove temp files a crashed write left. */
  static async open(dir: string, logger: Logger = silentLogger): Promise<LayerStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    for (const name of await readdir(dir)) {
      if (name.startsWith(TEMP_PREFIX)) await rm(join(dir, name), { force: true })
    }
    return new LayerStore(dir, logger)
  }

  private file(tocDigest: string): string | undefined {
    const m = DIGEST.exec(tocDigest)
    return m ? join(this.dir, `${m[1] as string}${SUFFIX}`) : undefined
  }

  /**
   * The record of `tocDigest` if there is one for this blob. Undefined when there is none (or it is
   * another blob's: two blobs may carry one TOC). Throws TocError (rule layer-record) when the
   * record is damaged; the caller drops it with remove().
   */
  async get(tocDigest: string, blobDigest: string): Promise<LayerRecord | undefined> {
    const path = this.file(tocDigest)
    if (path === undefined) return undefined
    let bytes: Buffer
    try {
      bytes = await readFile(path)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
    const rec = parseRecord(bytes, tocDigest, path)
    return rec.blobDigest === blobDigest ? rec : undefined
  }

  /** Write `rec` in the background (a crash mid-write leaves a temp file that open() sweeps). */
  put(rec: LayerRecord): void {
    const path = this.file(rec.tocDigest)
    if (this.closed || path === undefined) return
    const p = this.write(path, rec).catch((e: unknown) => this.log.warn({ tocDigest: rec.tocDigest, err: errorMessage(e) }, 'layer-record-write-failed'))
    this.writes.add(p)
    void p.finally(() => this.writes.delete(p))
  }

  /** Whether a record file exists for `tocDigest` (not checked: get() does that). */
  async has(tocDigest: string): Promise<boolean> {
    const path = this.file(tocDigest)
    return path !== undefined && access(path).then(() => true, () => false)
  }

  async remove(tocDigest: string): Promise<void> {
    const path = this.file(tocDigest)
    if (path !== undefined) await rm(path, { force: true })
  }

  /** Records on disk (tests and the bench count them). */
  async list(): Promise<string[]> {
    return (await readdir(this.dir)).filter((n) => n.endsWith(SUFFIX)).map((n) => `sha256:${n.slice(0, -SUFFIX.length)}`)
  }

  /** Wait for writes in flight; later put()s are ignored. */
  async close(): Promise<void> {
    this.closed = true
    await Promise.all([...this.writes])
  }

  private async write(path: string, rec: LayerRecord): Promise<void> {
    // First writer wins: a record is never replaced by another blob that carries the same TOC.
    if (await access(path).then(() => true, () => false)) return
    const header: Header = { tocDigest: rec.tocDigest, blobDigest: rec.blobDigest, size: rec.size, mediaType: rec.mediaType, footer: rec.footer, tocBytes: rec.json.length }
    const tmp = join(this.dir, `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`)
    try {
      const fh = await open(tmp, 'wx', 0o600)
      try {
        await fh.writev([Buffer.from(`${MAGIC}\n${JSON.stringify(header)}\n`), rec.json])
        // Durable before it becomes visible: a record that exists is complete after a power cut too.
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, path)
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => undefined)
      throw e
    }
    const d = await open(this.dir, 'r')
    try { await d.sync() } finally { await d.close() }
  }
}

function refuse(path: string, why: string): TocError {
  return new TocError('layer-record', `persisted layer record ${path} is damaged: ${why}; it is not used`)
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/** Parse and check a record file against the digest it is filed under. */
export function parseRecord(bytes: Buffer, tocDigest: string, path = 'record'): LayerRecord {
  const nl1 = bytes.indexOf(0x0a)
  if (nl1 < 0 || bytes.toString('latin1', 0, nl1) !== MAGIC) throw refuse(path, `it does not start with ${JSON.stringify(MAGIC)}`)
  const nl2 = bytes.indexOf(0x0a, nl1 + 1)
  if (nl2 < 0 || nl2 - nl1 > 64 * 1024) throw refuse(path, 'its header line is missing or too long')
  let h: Partial<Header>
  try {
    const parsed: unknown = JSON.parse(bytes.toString('utf8', nl1 + 1, nl2))
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object')
    h = parsed as Partial<Header>
  } catch (e) {
    throw refuse(path, `its header is not a JSON object (${errorMessage(e)})`)
  }
  if (h.tocDigest !== tocDigest) throw refuse(path, `it names TOC digest ${JSON.stringify(h.tocDigest)}, not ${tocDigest}`)
  if (typeof h.blobDigest !== 'string' || !DIGEST.test(h.blobDigest)) throw refuse(path, 'its blob digest is not a sha256 digest')
  if (!isCount(h.size) || h.size === 0) throw refuse(path, 'its blob size is not a positive integer')
  if (typeof h.mediaType !== 'string') throw refuse(path, 'it has no media type')
  const footer = checkFooter(h.footer, h.size, path)
  if (!isCount(h.tocBytes)) throw refuse(path, 'its TOC length is not an integer')
  const json = bytes.subarray(nl2 + 1)
  if (json.length !== h.tocBytes) throw refuse(path, `it holds ${json.length} TOC bytes, its header says ${h.tocBytes} (truncated?)`)
  const actual = 'sha256:' + createHash('sha256').update(json).digest('hex')
  if (actual !== tocDigest) throw refuse(path, `its TOC bytes hash to ${actual}, not ${tocDigest}`)
  // A copy: the record's bytes must not keep the whole file buffer alive through a subarray.
  return { tocDigest, blobDigest: h.blobDigest, size: h.size, mediaType: h.mediaType, footer, json: Buffer.from(json) }
}

/** Footer facts must be possible for a blob of `size` bytes (the TOC validation checks the rest). */
function checkFooter(f: unknown, size: number, path: string): Footer {
  if (typeof f !== 'object' || f === null) throw refuse(path, 'it has no footer')
  const o = f as Record<string, unknown>
  const kind = o.kind as FooterKind
  if (!FOOTER_KINDS.has(kind)) throw refuse(path, `its footer kind ${JSON.stringify(o.kind)} is unknown`)
  if (!isCount(o.size) || !isCount(o.tocOffset) || o.size > size || o.tocOffset > size - o.size) {
    throw refuse(path, `its footer (size ${String(o.size)}, TOC offset ${String(o.tocOffset)}) does not fit a blob of ${size} bytes`)
  }
  const out: Footer = { kind, size: o.size, tocOffset: o.tocOffset }
  for (const k of ['tocLength', 'tocRawSize', 'payloadEnd'] as const) {
    const v = o[k]
    if (v === undefined) continue
    if (!isCount(v) || v > size) throw refuse(path, `its footer field ${k} is not an integer within the blob`)
    out[k] = v
  }
  return out
}
