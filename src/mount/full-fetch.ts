/**
 * `--allow-full-fetch`: a layer that is not eStargz is fetched whole (its digest checked),
 * decompressed into `<dir>/layer.tar`, indexed, and served by the same FUSE adapter as eStargz
 * layers. Serving it instead of extracting it keeps whiteouts, opaque directories, owners,
 * devices and xattrs exactly as for lazy layers: Node cannot set xattrs (overlay's opaque
 * marker) on extracted files without a native addon.
 */
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import { join } from 'node:path'
import { FetchError, NotFoundError } from '../errors.js'
import { cleanEntryName } from '../estargz/entry-order.js'
import { TocIndex } from '../estargz/toc-index.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, type RangeSource, type TocEntry, type TocEntryType } from '../estargz/types.js'
import type { Layer, LayerState } from '../layer/types.js'
import { decompressLayer } from '../tar/decompress.js'
import type { EntryType } from '../tar/header.js'
import { readTar } from '../tar/reader.js'

const PIECE = 8 << 20

const TYPES: Record<EntryType, TocEntryType> = { '0': 'reg', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo' }

async function* pieces(source: RangeSource, digest: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const h = createHash('sha256')
  for (let off = 0; off < source.size; off += PIECE) {
    const b = await source.read(off, Math.min(PIECE, source.size - off), signal)
    h.update(b)
    yield b
  }
  const got = 'sha256:' + h.digest('hex')
  if (got !== digest) throw new FetchError(`layer ${digest}: fetched bytes hash to ${got}`)
}

/** A Layer over an uncompressed tar on local disk. */
export class TarLayer implements Layer {
  readonly tocDigest = ''
  private constructor(
    readonly digest: string,
    readonly index: TocIndex,
    private readonly offsets: Map<string, number>,
    private readonly fh: FileHandle,
    private readonly blobSize: number,
  ) {}

  /** Fetch `source` whole into dir/layer.tar and index it. `dir` must exist. */
  static async fetch(source: RangeSource, digest: string, dir: string, signal?: AbortSignal): Promise<TarLayer> {
    const tarPath = join(dir, 'layer.tar')
    await pipeline(Readable.from(decompressLayer(pieces(source, digest, signal))), createWriteStream(tarPath))
    const byName = new Map<string, TocEntry>()
    const offsets = new Map<string, number>()
    for await (const e of readTar(createReadStream(tarPath))) {
      const h = e.header
      const name = cleanEntryName(h.name)
      if (name === '' && h.typeflag !== '5') continue
      const entry: TocEntry = {
        name, type: TYPES[h.typeflag], mode: h.mode & 0o7777, uid: h.uid, gid: h.gid,
        modtime: new Date(h.mtime * 1000 + Math.floor(h.mtimeNsec / 1e6)).toISOString(),
      }
      if (entry.type === 'reg') { entry.size = h.size; offsets.set(name, e.dataOffset) }
      if (entry.type === 'symlink') entry.linkName = h.linkname
      if (entry.type === 'hardlink') entry.linkName = cleanEntryName(h.linkname)
      if (entry.type === 'char' || entry.type === 'block') { entry.devMajor = h.devmajor; entry.devMinor = h.devminor }
      if (h.xattrs.size > 0) entry.xattrs = Object.fromEntries([...h.xattrs].map(([k, v]) => [k, v.toString('base64')]))
      byName.delete(name) // a later entry replaces an earlier one, as on extraction
      byName.set(name, entry)
    }
    // TocIndex wants parents before children only for its implied-dir bookkeeping; order is kept.
    const index = new TocIndex({ version: 1, entries: [...byName.values()] }, 0, { prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK })
    return new TarLayer(digest, index, offsets, await open(tarPath, 'r'), source.size)
  }

  async read(name: string, offset: number, length: number): Promise<Buffer> {
    const e = this.index.resolve(name)
    const at = e ? this.offsets.get(e.name) : undefined
    if (!e || at === undefined) throw new NotFoundError(`no regular file ${JSON.stringify(name)} in layer ${this.digest}`)
    const end = Math.min(e.size ?? 0, offset + length)
    if (offset >= end) return Buffer.alloc(0)
    const buf = Buffer.allocUnsafe(end - offset)
    let done = 0
    while (done < buf.length) {
      const { bytesRead } = await this.fh.read(buf, done, buf.length - done, at + offset + done)
      if (bytesRead === 0) throw new FetchError(`layer ${this.digest}: local tar ends early reading ${JSON.stringify(name)}`)
      done += bytesRead
    }
    return buf
  }

  state(): LayerState {
    return { digest: this.digest, size: this.blobSize, fetchedSize: this.blobSize, fetchedPercent: 100 }
  }

  private closed = false
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.fh.close()
  }
}
