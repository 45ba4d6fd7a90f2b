import { FooterError } from '../errors.js'
import { FOOTER_SIZE, LEGACY_FOOTER_SIZE, type Footer } from './types.js'
import { hasZstdFooter, parseZstdFooter } from './zstd-format.js'
import { hasExternalTocFooter } from './external-toc.js'

// Byte layout: see types.ts. Offsets below are relative to the footer's first byte.
const GZIP_ID1 = 0x1f
const GZIP_ID2 = 0x8b
const CM_DEFLATE = 8
const FLG_FEXTRA = 0x04
const XLEN_ESTARGZ = 26
const XLEN_LEGACY = 22
const MAGIC = 'STARGZ'

function hexOffset(buf: Buffer, at: number): number | undefined {
  const s = buf.toString('latin1', at, at + 16)
  if (!/^[0-9a-fA-F]{16}$/.test(s)) return undefined
  const n = Number.parseInt(s, 16)
  return Number.isSafeInteger(n) ? n : undefined
}

/** The fields every gzip footer shares; returns a reason when they do not match. */
function checkGzipFrame(f: Buffer, xlen: number): string | undefined {
  if (f[0] !== GZIP_ID1 || f[1] !== GZIP_ID2) return 'no gzip magic'
  if (f[2] !== CM_DEFLATE) return `compression method ${f[2]} is not deflate`
  if (((f[3] ?? 0) & FLG_FEXTRA) === 0) return 'gzip header has no extra field'
  if (f.readUInt16LE(10) !== xlen) return `gzip extra length ${f.readUInt16LE(10)}, want ${xlen}`
  // CRC32 and ISIZE of an empty member are both zero.
  if (f.readUInt32LE(f.length - 8) !== 0 || f.readUInt32LE(f.length - 4) !== 0) return 'footer gzip member is not empty'
  return undefined
}

function tryEstargz(f: Buffer): Footer | string {
  const bad = checkGzipFrame(f, XLEN_ESTARGZ)
  if (bad) return bad
  if (f[12] !== 0x53 || f[13] !== 0x47) return 'extra subfield is not "SG"'
  if (f.readUInt16LE(14) !== 22) return `extra subfield length ${f.readUInt16LE(14)}, want 22`
  if (f.toString('latin1', 32, 38) !== MAGIC) return 'no STARGZ magic'
  const tocOffset = hexOffset(f, 16)
  if (tocOffset === undefined) return 'TOC offset is not 16 hex digits'
  return { kind: 'estargz', size: FOOTER_SIZE, tocOffset }
}

function tryLegacy(f: Buffer): Footer | string {
  const bad = checkGzipFrame(f, XLEN_LEGACY)
  if (bad) return bad
  if (f.toString('latin1', 28, 34) !== MAGIC) return 'no STARGZ magic'
  const tocOffset = hexOffset(f, 12)
  if (tocOffset === undefined) return 'TOC offset is not 16 hex digits'
  return { kind: 'legacy', size: LEGACY_FOOTER_SIZE, tocOffset }
}

/**
 * Parse the footer from the tail of a blob. `tail` must be the last bytes of the blob (at least
 * 47; pass 51 to recognise both kinds). `blobSize` bounds the TOC offset.
 */
export function parseFooter(tail: Buffer, blobSize?: number): Footer {
  if (tail.length < LEGACY_FOOTER_SIZE) {
    throw new FooterError(`blob too small for a stargz footer: ${tail.length} bytes (need at least ${LEGACY_FOOTER_SIZE})`)
  }
  // zstd:chunked ends in a skippable frame with its own magic; once that matches, its errors are
  // the ones worth reporting.
  if (hasZstdFooter(tail)) return parseZstdFooter(tail, blobSize ?? Number.MAX_SAFE_INTEGER)
  if (hasExternalTocFooter(tail)) {
    throw new FooterError('not an eStargz blob with its TOC inside: the footer says the TOC is external (STARGZEXTERNALTOC): it is a separate blob (the reference puts it in the image "<ref>-esgztoc") and none was found or given')
  }
  const reasons: string[] = []
  const candidates: Array<Footer | string> = []
  if (tail.length >= FOOTER_SIZE) candidates.push(tryEstargz(tail.subarray(tail.length - FOOTER_SIZE)))
  candidates.push(tryLegacy(tail.subarray(tail.length - LEGACY_FOOTER_SIZE)))
  for (const c of candidates) {
    if (typeof c === 'string') { reasons.push(c); continue }
    const limit = (blobSize ?? Number.MAX_SAFE_INTEGER) - c.size
    if (c.tocOffset >= limit) {
      reasons.push(`TOC offset ${c.tocOffset} is beyond the blob (TOC must end before byte ${limit})`)
      continue
    }
    return c
  }
  throw new FooterError(`not an eStargz blob: footer invalid (${reasons.join('; ')})`)
}

/** Cheap probe used by `inspect`: true when the tail parses as either footer. */
export function isStargzFooter(tail: Buffer, blobSize?: number): boolean {
  try { parseFooter(tail, blobSize); return true } catch { return false }
}
