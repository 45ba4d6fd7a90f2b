/**
 * Conversion cache: (input layer digest, conversion options) → eStargz blob. Conversion is
 * deterministic, so a hit is exactly what converting again would produce.
 *
 *   DIR/blobs/sha256/<hex>        output blobs (and, for optimize, nothing else)
 *   DIR/results/<kk>/<key>.json   CachedConversion for key <key> (sha256 of the key document)
 *   DIR/tmp/                      spool files and partial blobs
 *
 * Blobs and result files are written to a temp file and renamed, results after their blob, so a
 * crash leaves at worst an orphan blob. A hit is trusted only if its blob has the recorded size;
 * readers of the blob re-verify its digest (RegistryOutput, the copy into a layout).
 *
 * The cache holds converted private images: files are 0600 in 0700 directories (whatever the
 * umask), so a local user cannot read a layer they could not pull.
 */
import { createHash, randomBytes } from 'node:crypto'
import { chmod, mkdir, open, readFile, rename, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { convertLayer, type ConvertResult } from '../estargz/writer.js'

/** Bump when the writer's output for the same input and options changes. */
const CACHE_FORMAT = 1
const DIR_MODE = 0o700
const FILE_MODE = 0o600

/** A layer's bytes; `finish` reads what the converter left and checks the digest. */
export interface LayerInput extends AsyncIterable<Buffer> {
  finish(): Promise<void>
  abort(): Promise<void>
}

export interface LayerConvertOptions {
  chunkSize?: number
  compressionLevel?: number
  prioritizedFiles?: string[]
  /** Write zstd:chunked instead of gzip eStargz. */
  zstdChunked?: boolean
  /** Keep the TOC out of the blob; it is stored as a blob of its own (CachedConversion.externalTocBlob). */
  externalToc?: boolean
}

export interface CachedConversion extends ConvertResult {
  inputDigest: string
  /** Local path of the output blob. */
  path: string
  /** True when it came from the cache rather than a conversion just now. */
  cached: boolean
  /** externalToc conversions: the TOC blob, stored in the cache's blobs beside the layer. */
  externalTocBlob?: { digest: string; size: number }
}

export function conversionKey(inputDigest: string, opts: LayerConvertOptions): string {
  const doc = JSON.stringify({
    format: CACHE_FORMAT,
    input: inputDigest,
    chunkSize: opts.chunkSize ?? null,
    compressionLevel: opts.compressionLevel ?? null,
    prioritizedFiles: opts.prioritizedFiles ?? [],
    // Only when set, so the keys of existing gzip conversions do not change.
    ...(opts.zstdChunked ? { codec: 'zstd' } : {}),
    ...(opts.externalToc ? { externalToc: true } : {}),
  })
  return createHash('sha256').update(doc).digest('hex')
}

/** A Writable into a file that counts what it wrote; 'finish' comes after the file is closed. */
class CountingFile extends Writable {
  written = 0
  constructor(private readonly fh: FileHandle, private readonly onBytes?: (n: number) => void) { super({ highWaterMark: 1 << 20 }) }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.fh.write(chunk).then(() => { this.written += chunk.length; this.onBytes?.(chunk.length); cb() }, cb)
  }
  override _final(cb: (e?: Error | null) => void): void {
    this.fh.sync().then(() => this.fh.close()).then(() => cb(), cb)
  }
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.fh.close().then(() => cb(err), () => cb(err))
  }
}

export class ConvertCache {
  private readonly flights = new Map<string, Promise<CachedConversion>>()
  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<ConvertCache> {
    // New directories (the default's parents too) are 0700. A --cache-dir that exists already is
    // the user's to set; the directories inside it are ours, and are tightened even when an older
    // version made them 0755 (mkdir's mode applies only to what it creates).
    await mkdir(dir, { recursive: true, mode: DIR_MODE })
    for (const d of ['blobs', 'blobs/sha256', 'results', 'tmp']) {
      await mkdir(join(dir, d), { recursive: true, mode: DIR_MODE })
      await chmod(join(dir, d), DIR_MODE)
    }
    return new ConvertCache(dir)
  }

  get tmpDir(): string { return join(this.dir, 'tmp') }

  blobPath(digest: string): string { return join(this.dir, 'blobs', 'sha256', digest.replace(/^sha256:/, '')) }

  private resultPath(key: string): string { return join(this.dir, 'results', key.slice(0, 2), `${key}.json`) }

  async get(key: string): Promise<CachedConversion | undefined> {
    let r: CachedConversion
    try { r = JSON.parse(await readFile(this.resultPath(key), 'utf8')) as CachedConversion } catch { return undefined }
    const path = this.blobPath(r.digest)
    try {
      if ((await stat(path)).size !== r.size) return undefined
      if (r.externalTocBlob && (await stat(this.blobPath(r.externalTocBlob.digest))).size !== r.externalTocBlob.size) return undefined
    } catch { return undefined }
    return { ...r, path, cached: true }
  }

  /**
   * The conversion of `inputDigest` with `opts`: from the cache, or by converting `input()` now.
   * Concurrent calls for the same key share one conversion.
   */
  convert(inputDigest: string, opts: LayerConvertOptions, input: () => LayerInput, hooks: { onWritten?: (n: number) => void; onWarning?: (m: string) => void } = {}): Promise<CachedConversion> {
    const key = conversionKey(inputDigest, opts)
    let f = this.flights.get(key)
    if (!f) {
      f = this.convertUncached(key, inputDigest, opts, input, hooks).finally(() => this.flights.delete(key))
      this.flights.set(key, f)
    }
    return f
  }

  /** A blob kept as it is, copied into the cache (verified by `input`) so it can be written out. */
  async convertIdentity(digest: string, input: () => LayerInput): Promise<string> {
    const dest = this.blobPath(digest)
    try { await stat(dest); return dest } catch { /* not here yet */ }
    const tmp = join(this.tmpDir, `${digest.replace(/^sha256:/, '')}.${randomBytes(6).toString('hex')}.partial`)
    const fh = await open(tmp, 'wx', FILE_MODE)
    const src = input()
    try {
      for await (const b of src) await fh.write(b)
      await src.finish()
      await fh.close()
      await rename(tmp, dest)
    } catch (e) {
      await fh.close().catch(() => undefined)
      await src.abort().catch(() => undefined)
      await unlink(tmp).catch(() => undefined)
      throw e
    }
    return dest
  }

  private async convertUncached(key: string, inputDigest: string, opts: LayerConvertOptions, input: () => LayerInput, hooks: { onWritten?: (n: number) => void; onWarning?: (m: string) => void }): Promise<CachedConversion> {
    const hit = await this.get(key)
    if (hit) return hit
    const tmp = join(this.tmpDir, `${key}.${randomBytes(6).toString('hex')}.partial`)
    const out = new CountingFile(await open(tmp, 'wx', FILE_MODE), hooks.onWritten)
    let result: ConvertResult
    const src = input()
    try {
      result = await convertLayer(src, out, {
        ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
        ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
        ...(opts.prioritizedFiles !== undefined && opts.prioritizedFiles.length > 0 ? { prioritizedFiles: opts.prioritizedFiles } : {}),
        ...(opts.zstdChunked ? { zstdChunked: true } : {}),
        ...(opts.externalToc ? { externalToc: true } : {}),
        tmpDir: this.tmpDir,
        ...(hooks.onWarning ? { onWarning: hooks.onWarning } : {}),
      })
      // The tar reader stops at the end-of-archive blocks; the input digest covers all of it.
      await src.finish()
      await rename(tmp, this.blobPath(result.digest))
    } catch (e) {
      out.destroy()
      await src.abort().catch(() => undefined)
      await unlink(tmp).catch(() => undefined)
      throw e
    }
    // The TOC blob of an external-TOC conversion is a blob of its own, not part of the record.
    const { externalToc, ...plain } = result
    const record: Omit<CachedConversion, 'path' | 'cached'> = { ...plain, inputDigest }
    if (externalToc) {
      const digest = 'sha256:' + createHash('sha256').update(externalToc).digest('hex')
      const ttmp = join(this.tmpDir, `${digest.slice(7)}.${randomBytes(6).toString('hex')}.partial`)
      await writeFile(ttmp, externalToc, { mode: 0o644 })
      await rename(ttmp, this.blobPath(digest))
      record.externalTocBlob = { digest, size: externalToc.length }
    }
    const rp = this.resultPath(key)
    await mkdir(join(rp, '..'), { recursive: true, mode: DIR_MODE })
    const rtmp = `${rp}.${randomBytes(6).toString('hex')}.tmp`
    await writeFile(rtmp, JSON.stringify(record), { mode: FILE_MODE, flag: 'wx' })
    await rename(rtmp, rp)
    return { ...record, path: this.blobPath(result.digest), cached: false }
  }
}
