/**
 * Serialises tar headers (POSIX ustar, with a PAX 'x' header in front when a value does not fit
 * ustar: long or non-ASCII names, xattrs, big or negative numbers, fractional mtimes).
 * The caller writes the payload and then `paddingFor(size)` zero bytes.
 */
import { TarError } from '../errors.js'
import {
  BLOCK_SIZE, field, fitsOctal, isHeaderOnly, paddingFor, writeChecksum, writeNumeric, type TarHeader,
} from './header.js'
import { PAX_XATTR_PREFIX, formatPaxRecords, formatPaxTime } from './pax.js'

const NAME_SIZE = 100
const PREFIX_SIZE = 155

function isAscii(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /^[\x01-\x7f]*$/.test(s)
}

/** Best-effort ASCII rendering for fields whose real value travels in a PAX record. */
function toAscii(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x01-\x7f]/g, '')
}

function putString(f: Buffer, s: string): void {
  // Fields may be filled completely (no NUL) — that is valid ustar.
  f.write(s, 0, Math.min(Buffer.byteLength(s, 'latin1'), f.length), 'latin1')
}

/** Splits a long ASCII name into ustar prefix + name at a '/', or returns undefined. */
function splitUstarPath(name: string): [string, string] | undefined {
  if (name.length <= NAME_SIZE || !isAscii(name)) return undefined
  let limit = name.length
  if (limit > PREFIX_SIZE + 1) limit = PREFIX_SIZE + 1
  else if (name[limit - 1] === '/') limit--
  const i = name.lastIndexOf('/', limit - 1)
  if (i <= 0) return undefined
  const prefix = name.slice(0, i)
  const rest = name.slice(i + 1)
  if (rest.length === 0 || rest.length > NAME_SIZE || prefix.length > PREFIX_SIZE) return undefined
  return [prefix, rest]
}

function fitsString(s: string, size: number): boolean {
  return isAscii(s) && s.length <= size
}

function baseBlock(): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE)
  field(b, 'magic').write('ustar\0', 'latin1')
  field(b, 'version').write('00', 'latin1')
  return b
}

/** The PAX 'x' header block + records + padding for `name`. */
function paxBlocks(name: string, records: Map<string, Buffer | string>): Buffer {
  const data = formatPaxRecords(records)
  const slash = name.replace(/\/+$/, '').lastIndexOf('/')
  const dir = slash >= 0 ? name.slice(0, slash + 1) : ''
  const base = name.replace(/\/+$/, '').slice(slash + 1)
  let paxName = toAscii(`${dir}PaxHeaders.0/${base}`)
  if (paxName.length > NAME_SIZE) paxName = paxName.slice(0, NAME_SIZE)
  paxName = paxName.replace(/\/+$/, '')
  const b = baseBlock()
  putString(field(b, 'name'), paxName)
  writeNumeric(field(b, 'mode'), 0, 'mode')
  writeNumeric(field(b, 'uid'), 0, 'uid')
  writeNumeric(field(b, 'gid'), 0, 'gid')
  writeNumeric(field(b, 'size'), data.length, 'PAX header size')
  writeNumeric(field(b, 'mtime'), 0, 'mtime')
  b[156] = 0x78 // 'x'
  writeChecksum(b)
  return Buffer.concat([b, data, Buffer.alloc(paddingFor(data.length))])
}

/**
 * Encodes `h` as header block(s). The result is a whole number of blocks; the payload of
 * `h.size` bytes (0 for header-only types) and its padding follow it in the archive.
 */
export function encodeHeader(h: TarHeader): Buffer {
  const records = new Map<string, Buffer | string>()
  const b = baseBlock()
  const size = isHeaderOnly(h.typeflag) ? 0 : h.size
  if (!Number.isSafeInteger(size) || size < 0) throw new TarError(`tar entry ${JSON.stringify(h.name)}: invalid size ${h.size}`)

  if (fitsString(h.name, NAME_SIZE)) {
    putString(field(b, 'name'), h.name)
  } else {
    const split = splitUstarPath(h.name)
    if (split) {
      putString(field(b, 'prefix'), split[0])
      putString(field(b, 'name'), split[1])
    } else {
      records.set('path', h.name)
      putString(field(b, 'name'), toAscii(h.name).slice(0, NAME_SIZE))
    }
  }
  if (fitsString(h.linkname, NAME_SIZE)) putString(field(b, 'linkname'), h.linkname)
  else {
    records.set('linkpath', h.linkname)
    putString(field(b, 'linkname'), toAscii(h.linkname).slice(0, NAME_SIZE))
  }

  if (!fitsOctal(h.mode, 8)) throw new TarError(`tar entry ${JSON.stringify(h.name)}: mode ${h.mode} out of range`)
  writeNumeric(field(b, 'mode'), h.mode, 'mode')
  for (const [key, v, fname] of [['uid', h.uid, 'uid'], ['gid', h.gid, 'gid'], ['size', size, 'size']] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new TarError(`tar entry ${JSON.stringify(h.name)}: invalid ${key} ${v}`)
    if (!fitsOctal(v, fname === 'size' ? 12 : 8)) records.set(key, String(v))
    writeNumeric(field(b, fname), v, key)
  }
  if (h.mtimeNsec !== 0 || !fitsOctal(h.mtime, 12)) records.set('mtime', formatPaxTime(h.mtime, h.mtimeNsec))
  try {
    writeNumeric(field(b, 'mtime'), h.mtime, 'mtime')
  } catch {
    writeNumeric(field(b, 'mtime'), 0, 'mtime') // The PAX record carries it.
  }
  b[156] = h.typeflag.charCodeAt(0)

  if (fitsString(h.uname, 32)) putString(field(b, 'uname'), h.uname)
  else { records.set('uname', h.uname); putString(field(b, 'uname'), toAscii(h.uname).slice(0, 32)) }
  if (fitsString(h.gname, 32)) putString(field(b, 'gname'), h.gname)
  else { records.set('gname', h.gname); putString(field(b, 'gname'), toAscii(h.gname).slice(0, 32)) }
  writeNumeric(field(b, 'devmajor'), h.devmajor, 'devmajor')
  writeNumeric(field(b, 'devminor'), h.devminor, 'devminor')
  for (const [k, v] of h.extraPax) records.set(k, v)
  for (const [k, v] of h.xattrs) records.set(PAX_XATTR_PREFIX + k, v)

  writeChecksum(b)
  return records.size === 0 ? b : Buffer.concat([paxBlocks(h.name, records), b])
}

/** The two zero blocks that end an archive. */
export function endOfArchive(): Buffer {
  return Buffer.alloc(2 * BLOCK_SIZE)
}

export { paddingFor }
