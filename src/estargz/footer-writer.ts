/**
 * Builds the eStargz footer: an empty gzip member whose header "extra" field carries the TOC
 * offset (layout byte by byte in types.ts).
 */
import { InvalidArgumentError } from '../errors.js'
import { FOOTER_SIZE, LEGACY_FOOTER_SIZE, type FooterKind } from './types.js'

export function writeFooter(tocOffset: number, kind: FooterKind = 'estargz'): Buffer {
  if (!Number.isSafeInteger(tocOffset) || tocOffset < 0) throw new InvalidArgumentError(`footer: invalid TOC offset ${tocOffset}`)
  const payload = Buffer.from(tocOffset.toString(16).padStart(16, '0') + 'STARGZ', 'latin1') // 22 bytes
  const extra = kind === 'estargz'
    ? Buffer.concat([Buffer.from([0x53, 0x47, payload.length, 0x00]), payload]) // 'S' 'G' len16le
    : payload
  const out = Buffer.alloc(kind === 'estargz' ? FOOTER_SIZE : LEGACY_FOOTER_SIZE)
  out[0] = 0x1f
  out[1] = 0x8b
  out[2] = 0x08 // deflate
  out[3] = 0x04 // FEXTRA
  // 4..7 MTIME = 0, 8 XFL = 0
  out[9] = 0xff // OS unknown
  out.writeUInt16LE(extra.length, 10)
  extra.copy(out, 12)
  let p = 12 + extra.length
  // Empty final stored block: BFINAL=1 BTYPE=00, LEN=0, NLEN=0xffff.
  out[p++] = 0x01; out[p++] = 0x00; out[p++] = 0x00; out[p++] = 0xff; out[p++] = 0xff
  // CRC32 and ISIZE of nothing: 8 zero bytes (already zero).
  return out
}
