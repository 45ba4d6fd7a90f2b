/**
 * A streaming gzip/deflate decoder (RFC 1951/1952) that reports where each deflate block starts.
 *
 * node:zlib does not expose block boundaries (inflate's Z_BLOCK flush and `data_type` bit count are
 * not reachable from JS), and a checkpoint can only be resumed at a block boundary: a block's
 * Huffman tables are in its own header, so from a boundary all later state is the 32 KiB window.
 * This decoder is used once, at index time; reads resume with node:zlib (see span-inflate.ts).
 *
 * Input arrives in pieces. A block is decoded only when all of its bytes are here: on running out
 * mid-block the decoder rolls back to the block's start and waits for more (`push`), so a block is
 * decoded at most a few times and no state machine is needed inside a block. Output is produced
 * per block (the bytes a block wrote, in order).
 *
 * Every member's CRC-32 and ISIZE are checked, so a decoder bug cannot produce an index whose
 * digests describe bytes other than what gunzip gives.
 */
import { crc32 } from 'node:zlib'
import { gzIndexError } from './errors.js'

export interface BlockStart {
  /** Absolute bit offset of the block header in the compressed blob (byte * 8 + bit, LSB first). */
  bit: number
  /** Uncompressed offset (over all members) of the block's first output byte. */
  u: number
  /** First block of a gzip member (its window is empty). */
  memberStart: boolean
}

export interface ScanSink {
  /** Called before the block's output; `window` is the member's last ≤ 32 KiB of output. */
  onBlock(b: BlockStart, window: () => Buffer): void
  onData(data: Buffer): void
  /** A member's deflate stream ended at `bit` (exclusive, absolute), after `u` bytes of output. */
  onMemberEnd(bit: number, u: number): void
}

const WINDOW = 32768
const NEED_MORE = Symbol('need-more')

const LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

/**
 * A lookup table indexed by the next `bits` input bits (LSB first); each entry is
 * (symbol << 4) | code length, 0 where no code matches (an incomplete code).
 */
interface Huff { table: Int32Array; bits: number }

function buildHuff(lengths: ArrayLike<number>, n: number, what: string): Huff {
  const count = new Uint16Array(16)
  let max = 0
  for (let i = 0; i < n; i++) {
    const l = lengths[i] as number
    count[l]!++
    if (l > max) max = l
  }
  count[0] = 0
  // Over-subscribed codes are refused; incomplete ones are allowed (a one-code distance tree is).
  let left = 1
  for (let l = 1; l <= 15; l++) {
    left = (left << 1) - count[l]!
    if (left < 0) throw gzIndexError(`deflate: over-subscribed ${what} code`)
  }
  const bits = Math.max(max, 1)
  const table = new Int32Array(1 << bits)
  const next = new Uint16Array(16)
  let code = 0
  for (let l = 1; l <= 15; l++) {
    code = (code + count[l - 1]!) << 1
    next[l] = code
  }
  for (let sym = 0; sym < n; sym++) {
    const l = lengths[sym] as number
    if (l === 0) continue
    const c = next[l]!++
    let rev = 0
    for (let i = 0; i < l; i++) rev |= ((c >> i) & 1) << (l - 1 - i)
    const entry = (sym << 4) | l
    for (let j = rev; j < table.length; j += 1 << l) table[j] = entry
  }
  return { table, bits }
}

const FIXED_LIT = (() => {
  const l = new Uint8Array(288)
  l.fill(8, 0, 144); l.fill(9, 144, 256); l.fill(7, 256, 280); l.fill(8, 280, 288)
  return buildHuff(l, 288, 'fixed literal/length')
})()
const FIXED_DIST = buildHuff(new Uint8Array(30).fill(5), 30, 'fixed distance')

type Phase = 'header' | 'block' | 'trailer' | 'done'

export class InflateScanner {
  private data: Buffer = Buffer.alloc(0)
  /** Absolute offset of data[0]. */
  private base = 0
  // Bit reader over `data`.
  private ip = 0
  private bb = 0
  private bc = 0
  private phase: Phase = 'header'
  /** Output: the member's last WINDOW bytes (history) followed by the current block's output. */
  private out = new Uint8Array(1 << 18)
  private histLen = 0
  private olen = 0
  private uTotal = 0
  private memberU = 0
  private memberCrc = 0
  private memberFirstBlock = true
  private members = 0

  constructor(private readonly sink: ScanSink) {}

  get uncompressedSize(): number { return this.uTotal }
  get memberCount(): number { return this.members }

  push(chunk: Buffer): void {
    if (this.phase === 'done') return
    const pos = this.ip * 8 - this.bc
    const keep = pos >> 3
    const rest = this.data.subarray(keep)
    this.base += keep
    this.data = rest.length === 0 ? chunk : Buffer.concat([rest, chunk])
    this.seek(pos & 7)
    this.run()
  }

  /** The input is complete: refuse a truncated stream. */
  finish(): void {
    if (this.phase === 'header' && this.members > 0 && this.data.length - this.ip === 0) this.phase = 'done'
    if (this.phase !== 'done') throw gzIndexError(`gzip stream truncated at byte ${this.base + this.data.length} (in ${this.phase === 'header' && this.members === 0 ? 'the gzip header' : 'a member'})`)
  }

  private run(): void {
    for (;;) {
      // Committed position: a unit (header, block, trailer) is decoded whole or not at all.
      const pos = this.ip * 8 - this.bc
      try {
        if (this.phase === 'header') this.readHeader()
        else if (this.phase === 'block') this.readBlock()
        else if (this.phase === 'trailer') this.readTrailer()
        else return
      } catch (e) {
        if (e !== NEED_MORE) throw e
        this.seek(pos)
        this.olen = this.histLen
        return
      }
    }
  }

  /** Put the bit reader at bit `pos` of `data`. */
  private seek(pos: number): void {
    this.ip = pos >> 3
    this.bb = 0
    this.bc = 0
    const skip = pos & 7
    if (skip !== 0) {
      this.bb = this.data[this.ip++]! >> skip
      this.bc = 8 - skip
    }
  }

  private need(n: number): void {
    if (this.ip + n > this.data.length) throw NEED_MORE
  }

  private readHeader(): void {
    const d = this.data
    if (this.members > 0) {
      // After a member: another one, or the end. Trailing bytes that are no gzip member are
      // ignored, as gunzip does.
      if (d.length - this.ip < 2) throw NEED_MORE
      if (d[this.ip] !== 0x1f || d[this.ip + 1] !== 0x8b) { this.phase = 'done'; return }
    }
    this.need(10)
    const p = this.ip
    if (d[p] !== 0x1f || d[p + 1] !== 0x8b) throw gzIndexError(`not a gzip stream at byte ${this.base + p}`)
    if (d[p + 2] !== 8) throw gzIndexError(`gzip member at byte ${this.base + p}: compression method ${d[p + 2]} is not deflate`)
    const flg = d[p + 3]!
    if (flg & 0xe0) throw gzIndexError(`gzip member at byte ${this.base + p}: reserved flag bits set`)
    let q = p + 10
    if (flg & 4) {
      if (q + 2 > d.length) throw NEED_MORE
      q += 2 + d.readUInt16LE(q)
    }
    for (const bit of [8, 16]) {
      if (flg & bit) {
        const z = d.indexOf(0, q)
        if (z < 0) throw NEED_MORE
        q = z + 1
      }
    }
    if (flg & 2) q += 2
    if (q > d.length) throw NEED_MORE
    this.ip = q
    this.phase = 'block'
    this.memberU = 0
    this.memberCrc = 0
    this.memberFirstBlock = true
    this.histLen = 0
    this.olen = 0
  }

  private readTrailer(): void {
    this.need(8)
    const crc = this.data.readUInt32LE(this.ip)
    const isize = this.data.readUInt32LE(this.ip + 4)
    if (crc !== this.memberCrc >>> 0) throw gzIndexError(`gzip member ending at byte ${this.base + this.ip + 8}: CRC-32 mismatch`)
    if (isize !== this.memberU % 2 ** 32) throw gzIndexError(`gzip member ending at byte ${this.base + this.ip + 8}: ISIZE mismatch`)
    this.ip += 8
    this.members++
    this.phase = 'header'
  }

  private bits(n: number): number {
    while (this.bc < n) {
      if (this.ip >= this.data.length) throw NEED_MORE
      this.bb |= this.data[this.ip++]! << this.bc
      this.bc += 8
    }
    const v = this.bb & ((1 << n) - 1)
    this.bb >>>= n
    this.bc -= n
    return v
  }

  private decode(h: Huff): number {
    const { table, bits } = h
    while (this.bc < bits) {
      if (this.ip >= this.data.length) {
        // Near the end of the input a short code may already be complete.
        const e = table[this.bb & ((1 << bits) - 1)]!
        if (e !== 0 && (e & 15) <= this.bc) break
        throw NEED_MORE
      }
      this.bb |= this.data[this.ip++]! << this.bc
      this.bc += 8
    }
    const e = table[this.bb & ((1 << bits) - 1)]!
    const l = e & 15
    if (e === 0 || l > this.bc) throw gzIndexError(`deflate: invalid Huffman code near byte ${this.base + this.ip}`)
    this.bb >>>= l
    this.bc -= l
    return e >> 4
  }

  private ensureOut(n: number): void {
    if (this.olen + n <= this.out.length) return
    let size = this.out.length * 2
    while (size < this.olen + n) size *= 2
    const o = new Uint8Array(size)
    o.set(this.out.subarray(0, this.olen))
    this.out = o
  }

  private readBlock(): void {
    const startBit = (this.base + this.ip) * 8 - this.bc
    const final = this.bits(1)
    const type = this.bits(2)
    if (type === 0) {
      // Stored: skip to the byte boundary; the bit buffer holds whole bytes after that.
      this.bits(this.bc & 7)
      this.ip -= this.bc >> 3
      this.bb = 0
      this.bc = 0
      this.need(4)
      const len = this.data.readUInt16LE(this.ip)
      const nlen = this.data.readUInt16LE(this.ip + 2)
      if ((len ^ 0xffff) !== nlen) throw gzIndexError(`deflate: stored block length check failed at byte ${this.base + this.ip}`)
      this.need(4 + len)
      this.ensureOut(len)
      this.out.set(this.data.subarray(this.ip + 4, this.ip + 4 + len), this.olen)
      this.ip += 4 + len
      this.olen += len
    } else if (type === 1) {
      this.codes(FIXED_LIT, FIXED_DIST)
    } else if (type === 2) {
      const hlit = this.bits(5) + 257
      const hdist = this.bits(5) + 1
      const hclen = this.bits(4) + 4
      if (hlit > 286 || hdist > 30) throw gzIndexError('deflate: too many length or distance codes')
      const cl = new Uint8Array(19)
      for (let i = 0; i < hclen; i++) cl[CL_ORDER[i]!] = this.bits(3)
      const clh = buildHuff(cl, 19, 'code length')
      const lens = new Uint8Array(hlit + hdist)
      for (let i = 0; i < hlit + hdist;) {
        const sym = this.decode(clh)
        if (sym < 16) { lens[i++] = sym; continue }
        let rep: number
        let val = 0
        if (sym === 16) {
          if (i === 0) throw gzIndexError('deflate: repeat with no previous length')
          val = lens[i - 1]!
          rep = 3 + this.bits(2)
        } else if (sym === 17) rep = 3 + this.bits(3)
        else rep = 11 + this.bits(7)
        if (i + rep > hlit + hdist) throw gzIndexError('deflate: code lengths overflow')
        lens.fill(val, i, i + rep)
        i += rep
      }
      if (lens[256] === 0) throw gzIndexError('deflate: no end-of-block code')
      this.codes(buildHuff(lens.subarray(0, hlit), hlit, 'literal/length'), buildHuff(lens.subarray(hlit), hdist, 'distance'))
    } else {
      throw gzIndexError(`deflate: invalid block type 3 at bit ${startBit}`)
    }
    // The block is complete: report it, then its output, then keep the window.
    const blockOut = this.out.subarray(this.histLen, this.olen)
    const hist = this.histLen
    const out = this.out
    this.sink.onBlock({ bit: startBit, u: this.uTotal, memberStart: this.memberFirstBlock }, () => Buffer.from(out.slice(0, hist)))
    this.memberFirstBlock = false
    if (blockOut.length > 0) {
      const b = Buffer.from(blockOut)
      this.memberCrc = crc32(b, this.memberCrc)
      this.sink.onData(b)
    }
    this.uTotal += blockOut.length
    this.memberU += blockOut.length
    this.keepWindow()
    if (final) {
      const endBit = (this.base + this.ip) * 8 - this.bc
      this.sink.onMemberEnd(endBit, this.uTotal)
      // Byte-align; the trailer follows.
      this.ip -= this.bc >> 3
      this.bb = 0
      this.bc = 0
      this.phase = 'trailer'
    }
  }

  private keepWindow(): void {
    if (this.olen > WINDOW) {
      this.out.copyWithin(0, this.olen - WINDOW, this.olen)
      this.olen = WINDOW
    }
    this.histLen = this.olen
  }

  private codes(lit: Huff, dist: Huff): void {
    for (;;) {
      const sym = this.decode(lit)
      if (sym < 256) {
        if (this.olen >= this.out.length) this.ensureOut(1)
        this.out[this.olen++] = sym
        continue
      }
      if (sym === 256) return
      const li = sym - 257
      if (li >= 29) throw gzIndexError(`deflate: invalid length symbol ${sym}`)
      const len = LEN_BASE[li]! + this.bits(LEN_EXTRA[li]!)
      const ds = this.decode(dist)
      if (ds >= 30) throw gzIndexError(`deflate: invalid distance symbol ${ds}`)
      const d = DIST_BASE[ds]! + this.bits(DIST_EXTRA[ds]!)
      if (d > this.olen) throw gzIndexError(`deflate: distance ${d} reaches before the start of the member`)
      this.ensureOut(len)
      const o = this.out
      let src = this.olen - d
      let dst = this.olen
      if (d >= len) o.copyWithin(dst, src, src + len)
      else for (const end = dst + len; dst < end;) o[dst++] = o[src++]!
      this.olen += len
    }
  }
}
