/**
 * The gzip index ("gzindex") of one plain tar+gzip layer, as stored (one registry blob):
 *
 *   the whole blob is one gzip member of:
 *   0      4   "SGZI" magic
 *   4      4   u32 LE format version (1)
 *   8      4   u32 LE N = length of the JSON header
 *   12     N   JSON header (GzIndexHeader below), UTF-8
 *   12+N   W   the checkpoint windows, concatenated in span order (W = sum of windowLen)
 *   end-32 32  sha256 of every byte before it
 *
 * A span runs from one checkpoint (a deflate block boundary) to the next. Serving a read inflates
 * whole spans through the shared decode pool, exactly like an eStargz chunk: the span's bits are
 * re-framed as one self-contained gzip member (its window as a leading stored block, see
 * span-inflate.ts) whose output is window ++ span, so the member's CRC-32 and the span's sha256
 * (both over window ++ span, recorded at index time) are checked before any byte is used. A forged
 * window therefore fails the span digest too.
 *
 * Files are verified like eStargz files: each regular file is cut into `fileChunk`-byte chunks,
 * and every chunk's sha256 (a file of one chunk: its own sha256) is recorded at index time and
 * checked before a byte of it is served. A file table that points a name at other (genuine) layer
 * bytes gives a digest mismatch, never those bytes. (Digests here are claims about this layer, so
 * the reader takes a cache hit only for what it verified from this layer: reader.ts.)
 *
 * The trust root is the layer digest (in the image manifest) plus the index digest (in the index
 * manifest, found by tag). An index that is wrong about offsets, windows or digests gives inflate
 * errors or digest mismatches (EIO), or is refused at decode (a refused mount).
 */
import { createHash } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import { gzIndexError } from './errors.js'

export const GZINDEX_MAGIC = 'SGZI'
export const GZINDEX_VERSION = 2
/** deflate's window: a checkpoint never needs more history than this. */
export const WINDOW_BYTES = 32768
/** Largest span (uncompressed) a reader will inflate: bounds memory per read. */
export const MAX_SPAN_BYTES = 64 << 20
/** deflate's largest possible expansion (bytes out per compressed byte), with headroom. */
const MAX_DEFLATE_RATIO = 1040
/** Largest decoded index accepted. */
export const MAX_INDEX_BYTES = 512 << 20
export const MAX_FILES = 4_000_000
/** Smallest file chunk accepted (a 1 GiB file then has ≤ 16k chunk digests). */
export const MIN_FILE_CHUNK = 64 * 1024

export type GzFileType = 'reg' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo'

export interface GzFile {
  /** Name as in the tar header (whiteouts and "./" prefixes as-is). */
  name: string
  type: GzFileType
  mode: number
  uid: number
  gid: number
  /** Regular files: payload size; 0 otherwise. */
  size: number
  /** Offset of the payload in the uncompressed tar stream. */
  offset: number
  mtime: number
  /** sha256 hex of the payload (regular files). */
  sha256?: string
  /** Regular files over `fileChunk` bytes: sha256 hex of each `fileChunk`-byte piece, in order. */
  chunks?: string[]
  linkName?: string
  devMajor?: number
  devMinor?: number
  uname?: string
  gname?: string
  /** xattr name → base64 value. */
  xattrs?: Record<string, string>
}

export interface GzSpan {
  /** Absolute bit offset of the checkpoint's deflate block header in the layer blob. */
  startBit: number
  /** Bit offset where the span's last block ends (exclusive). */
  endBit: number
  /** Uncompressed offset of the span's first byte. */
  u: number
  /** Uncompressed length. */
  length: number
  /** The span's last block is the final block of its gzip member. */
  final: boolean
  /** Bytes of window stored for this checkpoint (0 at a member start). */
  windowLen: number
  /** sha256 hex of window ++ the span's uncompressed bytes (what the re-framed member inflates to). */
  sha256: string
  /** CRC-32 of window ++ span: the re-framed member's gzip trailer. */
  crc: number
}

export interface GzIndexHeader {
  version: number
  layer: { digest: string; size: number }
  uncompressedSize: number
  /** Checkpoint spacing asked for (uncompressed bytes). */
  spacing: number
  /** Files are verified in pieces of this many bytes (see GzFile.chunks). */
  fileChunk: number
  spans: GzSpan[]
  files: GzFile[]
}

export interface GzIndex extends GzIndexHeader {
  /** Window of span i. */
  window(i: number): Buffer
}

export function encodeIndex(header: GzIndexHeader, windows: readonly Buffer[]): Buffer {
  const json = Buffer.from(JSON.stringify(header))
  const pre = Buffer.alloc(12)
  pre.write(GZINDEX_MAGIC, 0, 'latin1')
  pre.writeUInt32LE(GZINDEX_VERSION, 4)
  pre.writeUInt32LE(json.length, 8)
  const body = Buffer.concat([pre, json, ...windows])
  const sum = createHash('sha256').update(body).digest()
  return gzipSync(Buffer.concat([body, sum]), { level: 9 })
}

const HEX64 = /^[0-9a-f]{64}$/
const TYPES = new Set<string>(['reg', 'hardlink', 'symlink', 'char', 'block', 'dir', 'fifo'])

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/** Refuse an index made for another layer (digest and compressed size must both match). */
export function checkIndexFor(h: GzIndexHeader, layer: { digest: string; size?: number }): void {
  if (h.layer.digest !== layer.digest || (layer.size !== undefined && h.layer.size !== layer.size)) {
    throw gzIndexError(`index is for layer ${h.layer.digest} (${h.layer.size} bytes), not ${layer.digest}${layer.size === undefined ? '' : ` (${layer.size} bytes)`}`)
  }
}

/** Decode and check an index blob; every claim is checked before it sizes anything. */
export function decodeIndex(blob: Buffer, expectLayer?: { digest: string; size?: number }): GzIndex {
  let raw: Buffer
  try { raw = gunzipSync(blob, { maxOutputLength: MAX_INDEX_BYTES }) } catch (e) {
    throw gzIndexError(`index blob does not gunzip (${(e as Error).message})`, { cause: e })
  }
  if (raw.length < 12 + 32 || raw.toString('latin1', 0, 4) !== GZINDEX_MAGIC) throw gzIndexError('bad magic')
  const version = raw.readUInt32LE(4)
  if (version !== GZINDEX_VERSION) throw gzIndexError(`unsupported format version ${version}`)
  const body = raw.subarray(0, raw.length - 32)
  if (!createHash('sha256').update(body).digest().equals(raw.subarray(raw.length - 32))) throw gzIndexError('checksum mismatch')
  const jsonLen = raw.readUInt32LE(8)
  if (12 + jsonLen > body.length) throw gzIndexError('header length past the end')
  let h: GzIndexHeader
  try { h = JSON.parse(body.toString('utf8', 12, 12 + jsonLen)) as GzIndexHeader } catch (e) {
    throw gzIndexError('header is not JSON', { cause: e })
  }
  if (typeof h !== 'object' || h === null || h.version !== GZINDEX_VERSION) throw gzIndexError('header version mismatch')
  if (typeof h.layer?.digest !== 'string' || !isUint(h.layer.size)) throw gzIndexError('bad layer descriptor')
  if (expectLayer) checkIndexFor(h, expectLayer)
  if (!isUint(h.uncompressedSize) || !isUint(h.spacing) || !isUint(h.fileChunk) || !Array.isArray(h.spans) || !Array.isArray(h.files)) throw gzIndexError('bad header fields')
  if (h.fileChunk < MIN_FILE_CHUNK || h.fileChunk > MAX_SPAN_BYTES) throw gzIndexError(`file chunk ${h.fileChunk} outside ${MIN_FILE_CHUNK}..${MAX_SPAN_BYTES}`)
  if (h.files.length > MAX_FILES) throw gzIndexError(`${h.files.length} files exceed ${MAX_FILES}`)
  const windowsAt: number[] = []
  let wpos = 12 + jsonLen
  let u = 0
  let prevEnd = 0
  const bitLimit = h.layer.size * 8
  for (const [i, s] of h.spans.entries()) {
    const where = `span ${i}`
    if (typeof s !== 'object' || s === null || !isUint(s.startBit) || !isUint(s.endBit) || !isUint(s.u) || !isUint(s.length) || !isUint(s.windowLen) || typeof s.final !== 'boolean' || !isUint(s.crc) || s.crc > 0xffffffff || typeof s.sha256 !== 'string' || !HEX64.test(s.sha256)) {
      throw gzIndexError(`${where}: malformed`)
    }
    if (s.u !== u) throw gzIndexError(`${where}: starts at uncompressed ${s.u}, expected ${u}`)
    if (s.length === 0 || s.length > MAX_SPAN_BYTES) throw gzIndexError(`${where}: length ${s.length} outside 1..${MAX_SPAN_BYTES}`)
    if (s.startBit < prevEnd || s.endBit <= s.startBit || s.endBit > bitLimit) throw gzIndexError(`${where}: bits [${s.startBit}, ${s.endBit}) out of order or past the layer`)
    // deflate cannot expand more than 1032:1 (258-byte matches in 2 bits): a longer claim is a lie,
    // and refusing it here keeps every inflate's output buffer within what the blob can yield.
    if (s.length > MAX_DEFLATE_RATIO * (Math.ceil(s.endBit / 8) - Math.floor(s.startBit / 8)) + 1024) throw gzIndexError(`${where}: ${s.length} bytes cannot come out of ${Math.ceil((s.endBit - s.startBit) / 8)} compressed bytes`)
    if (s.startBit % 2 !== 0) throw gzIndexError(`${where}: checkpoint at odd bit ${s.startBit}`)
    if (s.windowLen > Math.min(WINDOW_BYTES, s.u)) throw gzIndexError(`${where}: window of ${s.windowLen} bytes exceeds ${WINDOW_BYTES} or the bytes before it`)
    windowsAt.push(wpos)
    wpos += s.windowLen
    if (wpos > body.length) throw gzIndexError(`${where}: window past the end of the index`)
    u += s.length
    prevEnd = s.endBit
  }
  if (wpos !== body.length) throw gzIndexError('bytes after the last window')
  if (u !== h.uncompressedSize) throw gzIndexError(`spans cover ${u} bytes, header says ${h.uncompressedSize}`)
  for (const [i, f] of h.files.entries()) {
    if (typeof f !== 'object' || f === null || typeof f.name !== 'string' || !TYPES.has(f.type) || !isUint(f.mode) || !isUint(f.uid) || !isUint(f.gid) || !isUint(f.size) || !isUint(f.offset) || typeof f.mtime !== 'number') {
      throw gzIndexError(`file ${i}: malformed`)
    }
    if (f.type !== 'reg' && f.size !== 0) throw gzIndexError(`file ${JSON.stringify(f.name)}: a ${f.type} with size ${f.size}`)
    if (f.offset + f.size > h.uncompressedSize) throw gzIndexError(`file ${JSON.stringify(f.name)}: payload [${f.offset}, ${f.offset + f.size}) past the uncompressed layer (${h.uncompressedSize})`)
    if (f.type === 'reg' && (typeof f.sha256 !== 'string' || !HEX64.test(f.sha256))) throw gzIndexError(`file ${JSON.stringify(f.name)}: bad sha256`)
    const pieces = f.type === 'reg' && f.size > h.fileChunk ? Math.ceil(f.size / h.fileChunk) : 0
    if (pieces === 0 ? f.chunks !== undefined : !Array.isArray(f.chunks) || f.chunks.length !== pieces || !f.chunks.every((c) => typeof c === 'string' && HEX64.test(c))) {
      throw gzIndexError(`file ${JSON.stringify(f.name)}: ${pieces} chunk digests expected`)
    }
    if ((f.type === 'symlink' || f.type === 'hardlink') && typeof f.linkName !== 'string') throw gzIndexError(`file ${JSON.stringify(f.name)}: no link target`)
  }
  const index = h as GzIndex
  Object.defineProperty(index, 'window', {
    enumerable: false,
    value: (i: number): Buffer => body.subarray(windowsAt[i]!, windowsAt[i]! + h.spans[i]!.windowLen),
  })
  return index
}
