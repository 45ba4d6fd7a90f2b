/**
 * zstd:chunked wire format, as stargz-snapshotter's estargz/zstdchunked writes it (checked
 * against `ctr-remote image convert --zstdchunked --oci`, 0.12; fixtures in test/fixtures/zstd):
 *
 *   [zstd frame]* .......... tar headers and file payloads; every regular file's payload (or each
 *                            chunk of it) starts a fresh zstd frame (TOC `offset`), so it decodes
 *                            on its own. A chunk's frame may run on into the tar padding and the
 *                            next headers, and that data may take further frames.
 *   [skippable frame] ...... magic 50 2a 4d 18, u32le length, then one zstd frame holding the
 *                            TOC JSON (bare JSON: no tar header, unlike eStargz)
 *   [skippable frame] ...... the footer, 8 + 40 bytes:
 *
 *   0   50 2a 4d 18        skippable frame magic 0x184D2A50 (little endian)
 *   4   28 00 00 00        frame length = 40
 *   8   u64le              TOC offset: first byte of the TOC's zstd frame (after its 8-byte
 *                          skippable header)
 *   16  u64le              compressed TOC length
 *   24  u64le              uncompressed TOC length
 *   32  u64le              manifest type, 1 = CRFS (the only one there is)
 *   40  "GnUlInUx"         zstd:chunked magic
 *
 * A zstd decoder skips skippable frames, so the whole blob is still one valid .tar.zst.
 *
 * Layer annotations the reference writes: `containerd.io/snapshot/stargz/toc.digest` (sha256 of
 * the uncompressed TOC JSON, as for eStargz), `io.containers.estargz.uncompressed-size`,
 * `io.containers.zstd-chunked.manifest-checksum` (sha256 of the compressed TOC frame) and
 * `io.containers.zstd-chunked.manifest-position` ("offset:compressed:uncompressed:type").
 */
import { FooterError } from '../errors.js'

export const SKIPPABLE_MAGIC = 0x184d2a50
export const SKIPPABLE_HEADER_SIZE = 8
/** The footer's payload, without the skippable frame header in front of it. */
export const ZSTD_FOOTER_PAYLOAD_SIZE = 40
/** Footer as it sits at the end of the blob: skippable header + payload. */
export const ZSTD_FOOTER_SIZE = SKIPPABLE_HEADER_SIZE + ZSTD_FOOTER_PAYLOAD_SIZE
export const ZSTD_CHUNKED_MAGIC = 'GnUlInUx'
export const MANIFEST_TYPE_CRFS = 1
/** First four bytes of an ordinary zstd frame (0xFD2FB528 little endian). */
export const ZSTD_FRAME_MAGIC = 0xfd2fb528

export const ZSTD_MANIFEST_CHECKSUM_ANNOTATION = 'io.containers.zstd-chunked.manifest-checksum'
export const ZSTD_MANIFEST_POSITION_ANNOTATION = 'io.containers.zstd-chunked.manifest-position'
export const ZSTD_LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+zstd'

export interface ZstdFooter {
  kind: 'zstd'
  /** Bytes at the end of the blob the footer takes (skippable header included). */
  size: number
  /** First byte of the TOC's zstd frame. */
  tocOffset: number
  /** Compressed length of the TOC frame. */
  tocLength: number
  /** Length of the TOC JSON once decoded. */
  tocRawSize: number
  /** Where payload frames end: the TOC's skippable frame header starts here. */
  payloadEnd: number
}

function u64(buf: Buffer, at: number, what: string): number {
  const v = buf.readBigUInt64LE(at)
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FooterError(`zstd:chunked footer: ${what} ${v} is too large`)
  return Number(v)
}

/** True when the last 48 bytes look like a zstd:chunked footer (magic checks only). */
export function hasZstdFooter(tail: Buffer): boolean {
  if (tail.length < ZSTD_FOOTER_SIZE) return false
  const f = tail.subarray(tail.length - ZSTD_FOOTER_SIZE)
  return f.readUInt32LE(0) === SKIPPABLE_MAGIC && f.toString('latin1', 40, 48) === ZSTD_CHUNKED_MAGIC
}

/**
 * Parse the zstd:chunked footer from the tail of a blob of `blobSize` bytes. Every field is a
 * claim: the TOC frame must lie wholly between the start of the blob and the footer, right after
 * its own skippable header.
 */
export function parseZstdFooter(tail: Buffer, blobSize: number): ZstdFooter {
  if (tail.length < ZSTD_FOOTER_SIZE) throw new FooterError(`blob tail of ${tail.length} bytes is too short for a zstd:chunked footer (${ZSTD_FOOTER_SIZE})`)
  const f = tail.subarray(tail.length - ZSTD_FOOTER_SIZE)
  if (f.readUInt32LE(0) !== SKIPPABLE_MAGIC) throw new FooterError('zstd:chunked footer is not in a skippable frame')
  const frameLen = f.readUInt32LE(4)
  if (frameLen !== ZSTD_FOOTER_PAYLOAD_SIZE) throw new FooterError(`zstd:chunked footer frame is ${frameLen} bytes, want ${ZSTD_FOOTER_PAYLOAD_SIZE}`)
  if (f.toString('latin1', 40, 48) !== ZSTD_CHUNKED_MAGIC) throw new FooterError('no zstd:chunked magic "GnUlInUx" in the footer')
  const tocOffset = u64(f, 8, 'TOC offset')
  const tocLength = u64(f, 16, 'compressed TOC length')
  const tocRawSize = u64(f, 24, 'uncompressed TOC length')
  const type = u64(f, 32, 'manifest type')
  if (type !== MANIFEST_TYPE_CRFS) throw new FooterError(`zstd:chunked manifest type ${type} is not supported (only ${MANIFEST_TYPE_CRFS}, CRFS)`)
  const footerStart = blobSize - ZSTD_FOOTER_SIZE
  if (tocOffset < SKIPPABLE_HEADER_SIZE) throw new FooterError(`zstd:chunked TOC offset ${tocOffset} leaves no room for its skippable frame header`)
  if (tocLength === 0) throw new FooterError('zstd:chunked footer says the TOC is 0 bytes')
  if (tocOffset + tocLength > footerStart) {
    throw new FooterError(`zstd:chunked TOC [${tocOffset}, ${tocOffset + tocLength}) runs past the footer at ${footerStart}`)
  }
  return { kind: 'zstd', size: ZSTD_FOOTER_SIZE, tocOffset, tocLength, tocRawSize, payloadEnd: tocOffset - SKIPPABLE_HEADER_SIZE }
}

/** The TOC's skippable-frame header: it must wrap exactly the compressed TOC. */
export function checkTocFrameHeader(header: Buffer, footer: ZstdFooter): void {
  if (header.length !== SKIPPABLE_HEADER_SIZE || header.readUInt32LE(0) !== SKIPPABLE_MAGIC) {
    throw new FooterError(`zstd:chunked TOC at ${footer.tocOffset} is not preceded by a skippable frame header`)
  }
  const len = header.readUInt32LE(4)
  if (len !== footer.tocLength) throw new FooterError(`zstd:chunked TOC skippable frame is ${len} bytes, footer says ${footer.tocLength}`)
}

/** Wrap bytes in a skippable frame (writer side). */
export function skippableFrame(payload: Buffer): Buffer {
  const h = Buffer.alloc(SKIPPABLE_HEADER_SIZE)
  h.writeUInt32LE(SKIPPABLE_MAGIC, 0)
  h.writeUInt32LE(payload.length, 4)
  return Buffer.concat([h, payload])
}

/** The 48 footer bytes for a TOC frame at `tocOffset` (writer side). */
export function zstdFooterBytes(tocOffset: number, tocLength: number, tocRawSize: number): Buffer {
  const p = Buffer.alloc(ZSTD_FOOTER_PAYLOAD_SIZE)
  p.writeBigUInt64LE(BigInt(tocOffset), 0)
  p.writeBigUInt64LE(BigInt(tocLength), 8)
  p.writeBigUInt64LE(BigInt(tocRawSize), 16)
  p.writeBigUInt64LE(BigInt(MANIFEST_TYPE_CRFS), 24)
  p.write(ZSTD_CHUNKED_MAGIC, 32, 'latin1')
  return skippableFrame(p)
}
