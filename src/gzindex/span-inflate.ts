/**
 * Re-frame one span of a gzip layer as a self-contained gzip member, so it goes through the same
 * decode pool and the same decodeMember() check as an eStargz chunk (src/reader).
 *
 * A checkpoint is a deflate block header at bit (startBit & 7) of its byte. zlib wants to start at
 * bit 0 and offers no inflatePrime from JS. Shifting the bits down would break stored blocks inside
 * the span (they pad to the stream's real byte boundaries), so instead the bits before the header
 * are replaced by empty fixed-Huffman blocks (10 bits each: BFINAL=0, BTYPE=01, end-of-block
 * 0000000): n = shift/2 of them take 8n + shift bits, i.e. n prefix bytes plus the `shift` low bits
 * of the first byte, and every later bit keeps its alignment. That needs an even shift, so the
 * index builder only takes checkpoints at even bit offsets (half of all block boundaries).
 * A span that does not end its member stops mid-stream, where zlib would wait for more input (and
 * bits of the next block could read as a broken header); so right after the span's last bit we
 * write an empty final stored block (BFINAL=1, BTYPE=00, align, LEN=0000, NLEN=ffff). The result is
 * a complete raw deflate stream whose output is exactly the span, or an error.
 *
 * The checkpoint's window (the 32 KiB of output before it, which back-references may reach) goes
 * in front as one non-final stored block, so no dictionary is needed: the member inflates to
 * window ++ span. With a gzip header and a trailer holding the CRC-32 and length of window ++ span
 * (recorded at index time) it is an ordinary gzip member: gunzip checks the CRC, decodeMember
 * checks the length and the sha256 (also over window ++ span), and the reader drops the window.
 */
import { decodeMember } from '../reader/decode-member.js'
import { gzIndexError } from './errors.js'
import type { GzSpan } from './format.js'

/** Compressed byte range [offset, offset+length) that holds a span's bits. */
export function spanByteRange(s: GzSpan): { offset: number; length: number } {
  const offset = Math.floor(s.startBit / 8)
  return { offset, length: Math.ceil(s.endBit / 8) - offset }
}

/** The span's bits as a bit-0-aligned, self-terminated raw deflate stream. */
export function realign(s: GzSpan, bytes: Buffer): Buffer {
  const shift = s.startBit % 8
  if (shift % 2 !== 0) throw gzIndexError(`checkpoint at odd bit offset ${s.startBit}`)
  const pre = shift / 2
  const { offset, length } = spanByteRange(s)
  if (bytes.length < length) throw gzIndexError(`span at uncompressed offset ${s.u}: got ${bytes.length} of ${length} compressed bytes`)
  const nbits = 8 * pre + (s.endBit - 8 * offset)
  const out = Buffer.alloc(s.final ? Math.ceil(nbits / 8) : Math.ceil((nbits + 3) / 8) + 4)
  bytes.copy(out, pre, 0, length)
  out[pre]! &= ~((1 << shift) - 1) & 0xff
  for (let j = 0; j < pre; j++) {
    const bit = 10 * j + 1
    out[bit >> 3]! |= 1 << (bit & 7)
  }
  const tail = nbits % 8
  if (tail !== 0) out[nbits >> 3]! &= (1 << tail) - 1
  if (s.final) return out
  // 3 header bits at bit nbits: BFINAL=1, BTYPE=00; then LEN/NLEN at the next byte boundary.
  out[nbits >> 3]! |= 1 << (nbits & 7)
  const aligned = Math.ceil((nbits + 3) / 8)
  out.writeUInt16LE(0x0000, aligned)
  out.writeUInt16LE(0xffff, aligned + 2)
  return out
}

const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])

/** The gzip member that inflates to window ++ span (see the top of this file). */
export function spanMember(s: GzSpan, bytes: Buffer, window: Buffer): Buffer {
  if (window.length !== s.windowLen) throw gzIndexError(`span at uncompressed offset ${s.u}: window of ${window.length} bytes, index says ${s.windowLen}`)
  const body = realign(s, bytes)
  const pre = window.length === 0 ? Buffer.alloc(0) : Buffer.alloc(5)
  if (window.length > 0) {
    // BFINAL=0, BTYPE=00 (stored) in the first 3 bits, padded to the byte; then LEN and NLEN.
    pre[0] = 0
    pre.writeUInt16LE(window.length, 1)
    pre.writeUInt16LE(~window.length & 0xffff, 3)
  }
  const trailer = Buffer.alloc(8)
  trailer.writeUInt32LE(s.crc >>> 0, 0)
  trailer.writeUInt32LE((s.windowLen + s.length) % 0x100000000, 4)
  return Buffer.concat([GZIP_HEADER, pre, window, body, trailer])
}

/** Output size of spanMember(s): window ++ span. */
export function spanOutputSize(s: GzSpan): number {
  return s.windowLen + s.length
}

/**
 * Inflate span `s` on this thread (CLI, bench, tests) with the reader's own check: window ++ span
 * must hash to the span digest; returns the span's bytes only.
 */
export function inflateSpan(s: GzSpan, bytes: Buffer, window: Buffer): Buffer {
  const o = decodeMember(spanMember(s, bytes, window), spanOutputSize(s), `sha256:${s.sha256}`)
  if (o.kind === 'ok') return o.data.subarray(s.windowLen)
  if (o.kind === 'mismatch') throw gzIndexError(`span at uncompressed offset ${s.u} hashes to ${o.actual}, index says sha256:${s.sha256}`)
  throw gzIndexError(`span at uncompressed offset ${s.u} does not inflate from bit ${s.startBit} (${o.kind === 'error' ? o.message : o.kind})`)
}
