/**
 * Streaming tar reader: ustar, GNU (long names 'L'/'K', base-256 numbers) and PAX ('x', 'g').
 *
 * `readTar` yields one TarEntry per file-system entry with its metadata headers already applied.
 * The entry's `body` must be consumed (or left alone) before asking for the next entry; whatever
 * is left of it is skipped.
 */
import { TarError } from '../errors.js'
import { ByteSource } from './byte-source.js'
import {
  BLOCK_SIZE, field, fieldBytes, isHeaderOnly, isZeroBlock, paddingFor, parseNumeric, verifyChecksum,
  type EntryType, type TarHeader,
} from './header.js'
import { PAX_XATTR_PREFIX, parsePaxRecords, parsePaxTime } from './pax.js'

export interface TarEntry {
  header: TarHeader
  /** Archive offset of the first block belonging to this entry (its PAX / long-name blocks included). */
  offset: number
  /** Archive offset of the payload. */
  dataOffset: number
  /** The payload: exactly `header.size` bytes. Pieces are views into input buffers. */
  body: AsyncIterable<Buffer>
}

/** Metadata entries are bounded, as in Go's archive/tar. */
const MAX_SPECIAL_SIZE = 1 << 20

/** PAX keys this reader turns into header fields; the rest are carried in `extraPax`. */
const INTERPRETED_PAX = new Set(['path', 'linkpath', 'size', 'uid', 'gid', 'uname', 'gname', 'mtime', 'atime', 'ctime', 'charset', 'comment', 'hdrcharset'])

const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

function decodeName(b: Buffer, what: string, offset: number): string {
  try {
    return strictUtf8.decode(b)
  } catch (e) {
    throw new TarError(`tar header at offset ${offset}: ${what} is not valid UTF-8 (${JSON.stringify(b.toString('latin1'))}); non-UTF-8 names are not supported`, { cause: e })
  }
}

function paxInt(v: Buffer, key: string, offset: number): number {
  const s = v.toString('latin1')
  if (!/^[0-9]+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new TarError(`PAX header at offset ${offset}: bad ${key} ${JSON.stringify(s)}`)
  return Number(s)
}

function normaliseType(flag: string, name: string, offset: number): EntryType {
  switch (flag) {
    case '0': case '1': case '2': case '3': case '4': case '5': case '6':
      return flag
    case '\0':
      return name.endsWith('/') ? '5' : '0'
    case '7':
      return '0'
    case 'S':
      throw new TarError(`tar entry ${JSON.stringify(name)} at offset ${offset}: GNU sparse files are not supported`)
    default:
      throw new TarError(`tar entry ${JSON.stringify(name)} at offset ${offset}: unsupported entry type ${JSON.stringify(flag)}`)
  }
}

export async function* readTar(input: AsyncIterable<Buffer | Uint8Array | string>): AsyncGenerator<TarEntry> {
  const src = new ByteSource(input)
  const global = new Map<string, Buffer>()
  let local = new Map<string, Buffer>()
  let longName: string | undefined
  let longLink: string | undefined
  let entryStart = -1
  let sawAnything = false
  try {
    for (;;) {
      const off = src.offset
      const block = await src.readUpTo(BLOCK_SIZE)
      if (block.length === 0) {
        if (!sawAnything) throw new TarError('input is empty: not a tar archive')
        if (entryStart >= 0) throw new TarError(`truncated tar: input ended at offset ${off} after metadata headers starting at offset ${entryStart}`)
        return // Accepted without end-of-archive blocks, as GNU tar and Go do.
      }
      sawAnything = true
      if (block.length < BLOCK_SIZE) throw new TarError(`truncated tar: input ended at offset ${off + block.length} inside a header block starting at offset ${off}`)
      if (isZeroBlock(block)) {
        if (entryStart >= 0) throw new TarError(`truncated tar: end-of-archive block at offset ${off} after metadata headers starting at offset ${entryStart}`)
        const next = await src.readUpTo(BLOCK_SIZE)
        if (next.length > 0 && next.length < BLOCK_SIZE) throw new TarError(`truncated tar: input ended at offset ${off + BLOCK_SIZE + next.length} inside the end-of-archive blocks`)
        if (next.length === BLOCK_SIZE && !isZeroBlock(next)) throw new TarError(`tar header at offset ${off + BLOCK_SIZE}: non-zero block after a zero block (corrupted archive)`)
        await src.drain() // Trailing record padding.
        return
      }
      verifyChecksum(block, off)
      if (entryStart < 0) entryStart = off
      const magic = field(block, 'magic').toString('latin1')
      const version = field(block, 'version').toString('latin1')
      const posix = magic === 'ustar\0' && version === '00'
      const gnu = magic === 'ustar ' && version === ' \0'
      const flag = String.fromCharCode(block[156] as number)
      const rawSize = parseNumeric(field(block, 'size'), 'size', off)

      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        if (rawSize > MAX_SPECIAL_SIZE) throw new TarError(`tar header at offset ${off}: ${flag} metadata entry of ${rawSize} bytes exceeds ${MAX_SPECIAL_SIZE}`)
        const data = Buffer.from(await src.readExact(rawSize, `the payload of the ${flag} header at offset ${off}`))
        await src.skip(paddingFor(rawSize), `the padding of the ${flag} header at offset ${off}`)
        if (flag === 'x') {
          for (const [k, v] of parsePaxRecords(data, off)) local.set(k, v)
        } else if (flag === 'g') {
          for (const [k, v] of parsePaxRecords(data, off)) {
            if (v.length === 0) global.delete(k)
            else global.set(k, v)
          }
          entryStart = -1 // A global header stands alone.
        } else {
          const nul = data.indexOf(0)
          const s = decodeName(nul < 0 ? data : data.subarray(0, nul), flag === 'L' ? 'GNU long name' : 'GNU long link name', off)
          if (flag === 'L') longName = s
          else longLink = s
        }
        continue
      }

      const pax = new Map(global)
      for (const [k, v] of local) pax.set(k, v)
      for (const k of pax.keys()) {
        if (k.startsWith('GNU.sparse.')) throw new TarError(`tar header at offset ${off}: GNU sparse files are not supported (PAX record ${k})`)
      }

      let name: string
      const paxPath = pax.get('path')
      if (paxPath !== undefined && paxPath.length > 0) name = decodeName(paxPath, 'PAX path', off)
      else if (longName !== undefined) name = longName
      else {
        const n = decodeName(fieldBytes(block, 'name'), 'name', off)
        const p = posix ? decodeName(fieldBytes(block, 'prefix'), 'name prefix', off) : ''
        name = p === '' ? n : `${p}/${n}`
      }
      let linkname: string
      const paxLink = pax.get('linkpath')
      if (paxLink !== undefined && paxLink.length > 0) linkname = decodeName(paxLink, 'PAX linkpath', off)
      else if (longLink !== undefined) linkname = longLink
      else linkname = decodeName(fieldBytes(block, 'linkname'), 'link name', off)

      const typeflag = normaliseType(flag, name, off)
      const hasUstarFields = posix || gnu
      let size = rawSize
      const paxSize = pax.get('size')
      if (paxSize !== undefined) size = paxInt(paxSize, 'size', off)
      if (isHeaderOnly(typeflag)) size = 0

      let mtime = parseNumeric(field(block, 'mtime'), 'mtime', off)
      let mtimeNsec = 0
      const paxMtime = pax.get('mtime')
      if (paxMtime !== undefined) ({ sec: mtime, nsec: mtimeNsec } = parsePaxTime(paxMtime.toString('latin1'), off))

      const xattrs = new Map<string, Buffer>()
      const extraPax = new Map<string, Buffer>()
      for (const [k, v] of pax) {
        if (k.startsWith(PAX_XATTR_PREFIX)) xattrs.set(k.slice(PAX_XATTR_PREFIX.length), v)
        else if (!INTERPRETED_PAX.has(k)) extraPax.set(k, v)
      }
      const paxUname = pax.get('uname')
      const paxGname = pax.get('gname')
      const paxUid = pax.get('uid')
      const paxGid = pax.get('gid')
      const header: TarHeader = {
        name,
        mode: parseNumeric(field(block, 'mode'), 'mode', off),
        uid: paxUid !== undefined ? paxInt(paxUid, 'uid', off) : parseNumeric(field(block, 'uid'), 'uid', off),
        gid: paxGid !== undefined ? paxInt(paxGid, 'gid', off) : parseNumeric(field(block, 'gid'), 'gid', off),
        size,
        mtime,
        mtimeNsec,
        typeflag,
        linkname,
        uname: paxUname !== undefined ? paxUname.toString('utf8') : hasUstarFields ? fieldBytes(block, 'uname').toString('utf8') : '',
        gname: paxGname !== undefined ? paxGname.toString('utf8') : hasUstarFields ? fieldBytes(block, 'gname').toString('utf8') : '',
        devmajor: hasUstarFields ? parseNumeric(field(block, 'devmajor'), 'devmajor', off) : 0,
        devminor: hasUstarFields ? parseNumeric(field(block, 'devminor'), 'devminor', off) : 0,
        xattrs,
        extraPax,
      }

      const what = `the payload of ${JSON.stringify(name)} (header at offset ${off})`
      let remaining = size
      async function* body(): AsyncGenerator<Buffer> {
        for await (const piece of src.pieces(remaining, what)) {
          remaining -= piece.length
          yield piece
        }
      }
      const entry: TarEntry = { header, offset: entryStart, dataOffset: src.offset, body: { [Symbol.asyncIterator]: body } }
      local = new Map()
      longName = undefined
      longLink = undefined
      entryStart = -1
      yield entry
      if (remaining > 0) await src.skip(remaining, what)
      await src.skip(paddingFor(size), `the padding after ${JSON.stringify(name)}`)
    }
  } finally {
    await src.close()
  }
}
