/**
 * Tar header block: layout, numeric fields and checksum.
 *
 * One header is a 512-byte block. Offsets (decimal) and sizes of the fields:
 *
 *   0   name      100   NUL-terminated unless it fills the field
 *   100 mode        8   octal
 *   108 uid         8   octal, or base-256 (GNU) when the top bit of byte 0 is set
 *   116 gid         8   "
 *   124 size       12   "
 *   136 mtime      12   " (base-256 allows negative values: byte 0 = 0xff)
 *   148 chksum      8   octal; sum of all 512 bytes with this field read as 8 spaces
 *   156 typeflag    1   '0' or NUL reg, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir,
 *                       '6' fifo, '7' contiguous (= reg), 'x' PAX, 'g' PAX global, 'L' / 'K' GNU
 *                       long name / long link name
 *   157 linkname  100
 *   257 magic       6   "ustar\0" (POSIX) or "ustar " (GNU, followed by version " \0")
 *   263 version     2   "00" (POSIX)
 *   265 uname      32
 *   297 gname      32
 *   329 devmajor    8   octal / base-256
 *   337 devminor    8   "
 *   345 prefix    155   POSIX only: name = prefix + "/" + name. GNU keeps atime/ctime here instead.
 *   500 (padding)  12
 *
 * Octal fields are ASCII digits, optionally led by spaces/NULs and ended by a space or NUL.
 * Base-256: byte 0 is 0x80 (positive) or 0xff (negative, two's complement), the remaining bytes are
 * a big-endian integer.
 */
import { TarError } from '../errors.js'

export const BLOCK_SIZE = 512

export const FIELD = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>

export type FieldName = keyof typeof FIELD

/** Entry types after normalisation ('\0' and '7' become '0'). */
export type EntryType = '0' | '1' | '2' | '3' | '4' | '5' | '6'

/** A fully resolved tar entry header (GNU long names and PAX records applied). */
export interface TarHeader {
  name: string
  mode: number
  uid: number
  gid: number
  /** Payload size; 0 for header-only types. */
  size: number
  /** Whole seconds since the epoch (may be negative). */
  mtime: number
  /** Nanoseconds, 0..999,999,999, added to `mtime`. */
  mtimeNsec: number
  typeflag: EntryType
  linkname: string
  uname: string
  gname: string
  devmajor: number
  devminor: number
  /** From PAX `SCHILY.xattr.<name>` records; values are raw bytes. */
  xattrs: Map<string, Buffer>
  /** PAX records we do not interpret but carry over (e.g. SCHILY.acl.*), raw values. */
  extraPax: Map<string, Buffer>
}

export function emptyHeader(name: string, typeflag: EntryType): TarHeader {
  return {
    name, mode: 0, uid: 0, gid: 0, size: 0, mtime: 0, mtimeNsec: 0, typeflag,
    linkname: '', uname: '', gname: '', devmajor: 0, devminor: 0,
    xattrs: new Map(), extraPax: new Map(),
  }
}

/** Types that never carry a payload, whatever their size field says (as Go's archive/tar). */
export function isHeaderOnly(typeflag: string): boolean {
  return typeflag === '1' || typeflag === '2' || typeflag === '3' || typeflag === '4' || typeflag === '5' || typeflag === '6'
}

export function field(block: Buffer, name: FieldName): Buffer {
  const [off, len] = FIELD[name]
  return block.subarray(off, off + len)
}

/** Bytes of a string field up to the first NUL. */
export function fieldBytes(block: Buffer, name: FieldName): Buffer {
  const f = field(block, name)
  const nul = f.indexOf(0)
  return nul < 0 ? f : f.subarray(0, nul)
}

export function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false
  return true
}

/**
 * Parses a numeric field (octal or base-256). `what` names the field in errors, `offset` is the
 * header's position in the archive.
 */
export function parseNumeric(f: Buffer, what: string, offset: number): number {
  if (f.length > 0 && ((f[0] as number) & 0x80) !== 0) {
    // Two's complement below the marker bit: bit 6 of byte 0 is the sign.
    const negative = ((f[0] as number) & 0x40) !== 0
    let v = 0n
    for (let i = 0; i < f.length; i++) {
      let b = f[i] as number
      if (negative) b ^= 0xff
      if (i === 0) b &= 0x7f
      v = (v << 8n) | BigInt(b)
    }
    if (negative) v = -v - 1n
    const n = Number(v)
    if (!Number.isSafeInteger(n)) throw new TarError(`tar header at offset ${offset}: ${what} field is out of range (${v})`)
    return n
  }
  let s = f.toString('latin1')
  const nul = s.indexOf('\0')
  if (nul >= 0) s = s.slice(0, nul)
  s = s.trim()
  if (s === '') return 0
  if (!/^[0-7]+$/.test(s)) throw new TarError(`tar header at offset ${offset}: ${what} field is not octal: ${JSON.stringify(s)}`)
  const n = parseInt(s, 8)
  if (!Number.isSafeInteger(n)) throw new TarError(`tar header at offset ${offset}: ${what} field is out of range`)
  return n
}

/** True if `v` fits in the field as zero-padded octal followed by a NUL. */
export function fitsOctal(v: number, fieldLen: number): boolean {
  return Number.isInteger(v) && v >= 0 && v < 8 ** (fieldLen - 1)
}

/** Writes `v` into `f`: octal if it fits, else base-256 (GNU). Throws if neither fits. */
export function writeNumeric(f: Buffer, v: number, what: string): void {
  if (fitsOctal(v, f.length)) {
    f.write(v.toString(8).padStart(f.length - 1, '0'), 0, 'latin1')
    f[f.length - 1] = 0
    return
  }
  let x = BigInt(v)
  const limit = 1n << BigInt((f.length - 1) * 8)
  if (x >= limit || x < -limit) throw new TarError(`${what} ${v} does not fit a ${f.length}-byte tar field`)
  for (let i = f.length - 1; i >= 1; i--) {
    f[i] = Number(x & 0xffn)
    x >>= 8n
  }
  f[0] = v < 0 ? 0xff : 0x80
}

/** Sum of the block's bytes with the checksum field counted as spaces (unsigned). */
export function computeChecksum(block: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0
  let signed = 0
  const [off, len] = FIELD.chksum
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const b = i >= off && i < off + len ? 0x20 : (block[i] as number)
    unsigned += b
    signed += b >= 0x80 ? b - 256 : b
  }
  return { unsigned, signed }
}

/** Throws TarError if the block's stored checksum matches neither the unsigned nor signed sum. */
export function verifyChecksum(block: Buffer, offset: number): void {
  let stored: number
  try {
    stored = parseNumeric(field(block, 'chksum'), 'checksum', offset)
  } catch {
    stored = -1
  }
  const { unsigned, signed } = computeChecksum(block)
  if (stored !== unsigned && stored !== signed) {
    throw new TarError(`tar header at offset ${offset}: bad checksum (stored ${stored < 0 ? JSON.stringify(field(block, 'chksum').toString('latin1')) : stored}, computed ${unsigned}); not a tar archive or corrupted`)
  }
}

/** Writes the checksum of a fully filled block into its chksum field ("%06o\0 "). */
export function writeChecksum(block: Buffer): void {
  const { unsigned } = computeChecksum(block)
  const f = field(block, 'chksum')
  f.write(unsigned.toString(8).padStart(6, '0'), 0, 'latin1')
  f[6] = 0
  f[7] = 0x20
}

/** Number of zero bytes that pad `size` payload bytes to a whole block. */
export function paddingFor(size: number): number {
  const r = size % BLOCK_SIZE
  return r === 0 ? 0 : BLOCK_SIZE - r
}

/** A shared zero block; never write into it. */
export const ZERO_BLOCK: Buffer = Buffer.alloc(BLOCK_SIZE)
