/**
 * Build the gzip index of a tar+gzip layer in one pass: the block scanner inflates, checkpoints
 * are taken at the first block boundary at least `spacing` bytes after the previous one (and at
 * every member start), and the tar reader walks the same output for the file table.
 */
import { createHash, type Hash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import type { TarHeader } from '../tar/header.js'
import { readTar } from '../tar/reader.js'
import { gzIndexError } from './errors.js'
import { encodeIndex, GZINDEX_VERSION, MAX_SPAN_BYTES, MIN_FILE_CHUNK, type GzFile, type GzFileType, type GzIndexHeader, type GzSpan } from './format.js'
import { InflateScanner } from './inflate-scan.js'

/** Default checkpoint spacing: 4 MiB of uncompressed data (see bench/RESULTS.md, gzindex). */
export const DEFAULT_SPACING = 4 << 20

/** Default file chunk: the eStargz chunk size (a cold small read costs about what it does there). */
export const DEFAULT_FILE_CHUNK = 4 << 20

export interface BuildOptions {
  layer: { digest: string; size: number }
  spacing?: number
  /** Bytes per verified file piece (GzFile.chunks). Default DEFAULT_FILE_CHUNK. */
  fileChunk?: number
}

export interface BuiltIndex {
  header: GzIndexHeader
  windows: Buffer[]
  /** The encoded index blob. */
  blob: Buffer
  /** sha256 of the compressed input, hex: the caller checks it against the layer digest. */
  inputSha256: string
}

const TYPE: Record<string, GzFileType> = { '0': 'reg', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo' }

function fileOf(h: TarHeader, offset: number): GzFile {
  const type = TYPE[h.typeflag]
  if (type === undefined) throw gzIndexError(`tar entry ${JSON.stringify(h.name)}: type ${h.typeflag}`)
  const f: GzFile = { name: h.name, type, mode: h.mode, uid: h.uid, gid: h.gid, size: type === 'reg' ? h.size : 0, offset, mtime: h.mtime }
  if (type === 'symlink' || type === 'hardlink') f.linkName = h.linkname
  if (type === 'char' || type === 'block') { f.devMajor = h.devmajor; f.devMinor = h.devminor }
  if (h.uname) f.uname = h.uname
  if (h.gname) f.gname = h.gname
  if (h.xattrs.size > 0) f.xattrs = Object.fromEntries([...h.xattrs].map(([k, v]) => [k, v.toString('base64')]))
  return f
}

export async function buildIndex(input: AsyncIterable<Buffer>, opts: BuildOptions): Promise<BuiltIndex> {
  const spacing = opts.spacing ?? DEFAULT_SPACING
  if (!Number.isSafeInteger(spacing) || spacing < 64 * 1024 || spacing > MAX_SPAN_BYTES / 2) {
    throw gzIndexError(`checkpoint spacing ${spacing} outside ${64 * 1024}..${MAX_SPAN_BYTES / 2}`)
  }
  const fileChunk = opts.fileChunk ?? DEFAULT_FILE_CHUNK
  if (!Number.isSafeInteger(fileChunk) || fileChunk < MIN_FILE_CHUNK || fileChunk > MAX_SPAN_BYTES) {
    throw gzIndexError(`file chunk ${fileChunk} outside ${MIN_FILE_CHUNK}..${MAX_SPAN_BYTES}`)
  }
  const spans: GzSpan[] = []
  const windows: Buffer[] = []
  let open: { startBit: number; u: number; window: Buffer; hash: Hash; crc: number } | undefined
  let u = 0
  const close = (endBit: number, final: boolean): void => {
    if (!open) return
    const length = u - open.u
    if (length > 0) {
      // A single block longer than the span cap cannot be split: refuse rather than write an
      // index every reader refuses.
      if (length > MAX_SPAN_BYTES) throw gzIndexError(`a span of ${length} bytes at uncompressed ${open.u} exceeds ${MAX_SPAN_BYTES} (one deflate block that large)`)
      spans.push({ startBit: open.startBit, endBit, u: open.u, length, final, windowLen: open.window.length, sha256: open.hash.digest('hex'), crc: open.crc })
      windows.push(open.window)
    }
    open = undefined
  }
  let pending: Buffer[] = []
  const scanner = new InflateScanner({
    onBlock(b, window) {
      // Resumable only at even bit offsets (see span-inflate.ts); a member start always is.
      if (open && (u - open.u < spacing || b.bit % 2 !== 0)) return
      close(b.bit, false)
      const w = b.memberStart ? Buffer.alloc(0) : window()
      // Digest and CRC cover window ++ span: what the re-framed member inflates to (span-inflate.ts).
      open = { startBit: b.bit, u: b.u, window: w, hash: createHash('sha256').update(w), crc: crc32(w) }
    },
    onData(d) {
      if (open) { open.hash.update(d); open.crc = crc32(d, open.crc) }
      u += d.length
      pending.push(d)
    },
    onMemberEnd(bit) { close(bit, true) },
  })
  const inputHash = createHash('sha256')
  const it = input[Symbol.asyncIterator]()
  let inputDone = false
  async function* uncompressed(): AsyncGenerator<Buffer> {
    for (;;) {
      if (pending.length > 0) {
        const out = pending
        pending = []
        yield* out
        continue
      }
      if (inputDone) return
      const r = await it.next()
      if (r.done) { inputDone = true; scanner.finish(); continue }
      inputHash.update(r.value)
      scanner.push(r.value)
    }
  }
  const files: GzFile[] = []
  for await (const e of readTar(uncompressed())) {
    const f = fileOf(e.header, e.dataOffset)
    if (f.type === 'reg') {
      const whole = createHash('sha256')
      const chunks: string[] = []
      let piece = createHash('sha256')
      let inPiece = 0
      for await (let data of e.body) {
        whole.update(data)
        while (data.length > 0) {
          const take = Math.min(data.length, fileChunk - inPiece)
          piece.update(data.subarray(0, take))
          inPiece += take
          data = data.subarray(take)
          if (inPiece === fileChunk) { chunks.push(piece.digest('hex')); piece = createHash('sha256'); inPiece = 0 }
        }
      }
      if (inPiece > 0) chunks.push(piece.digest('hex'))
      f.sha256 = whole.digest('hex')
      if (f.size > fileChunk) f.chunks = chunks
    }
    files.push(f)
  }
  // The tar may end before the blob does (end-of-archive padding, more members): scan it all.
  while (!inputDone) {
    const r = await it.next()
    if (r.done) { inputDone = true; scanner.finish(); break }
    inputHash.update(r.value)
    scanner.push(r.value)
    pending = []
  }
  if (open) throw gzIndexError('gzip stream ended inside a member')
  const header: GzIndexHeader = { version: GZINDEX_VERSION, layer: opts.layer, uncompressedSize: u, spacing, fileChunk, spans, files }
  return { header, windows, blob: encodeIndex(header, windows), inputSha256: inputHash.digest('hex') }
}
