/**
 * A deliberately simple, independent eStargz builder for reader tests: it shares no code with
 * src/estargz/writer.ts so the reader is checked against a second implementation of the layout.
 */
import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'

export interface MiniFile {
  name: string
  type?: 'reg' | 'dir' | 'symlink' | 'hardlink'
  data?: Buffer
  linkName?: string
  chunkSize?: number
}

function sha(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

function tarHeader(name: string, size: number, typeflag: string, linkName = ''): Buffer {
  const h = Buffer.alloc(512)
  h.write(name, 0, 100, 'utf8')
  h.write('0000644\0', 100)
  h.write('0000000\0', 108)
  h.write('0000000\0', 116)
  h.write(size.toString(8).padStart(11, '0') + '\0', 124)
  h.write('00000000000\0', 136)
  h.write('        ', 148)
  h.write(typeflag, 156)
  h.write(linkName, 157, 100, 'utf8')
  h.write('ustar\0', 257)
  h.write('00', 263)
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148)
  return h
}

function pad(n: number): Buffer {
  return Buffer.alloc((512 - (n % 512)) % 512)
}

export function footer(tocOffset: number, legacy = false): Buffer {
  const hex = tocOffset.toString(16).padStart(16, '0') + 'STARGZ'
  const head = Buffer.from([0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff])
  const extra = legacy
    ? Buffer.from(hex, 'latin1')
    : Buffer.concat([Buffer.from([0x53, 0x47, 22, 0]), Buffer.from(hex, 'latin1')])
  const xlen = Buffer.alloc(2)
  xlen.writeUInt16LE(extra.length)
  const tail = Buffer.from([1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0])
  return Buffer.concat([head, xlen, extra, tail])
}

export interface MiniBlob {
  blob: Buffer
  tocJson: Buffer
  tocDigest: string
  tocOffset: number
  toc: { version: number; entries: Array<Record<string, unknown>> }
}

export function buildMiniEstargz(files: MiniFile[], opts: { legacy?: boolean; mutateToc?: (toc: MiniBlob['toc']) => void } = {}): MiniBlob {
  const parts: Buffer[] = []
  let off = 0
  let pending: Buffer[] = [] // uncompressed bytes of the currently open member
  const flush = (): void => {
    if (pending.length === 0) return
    const m = gzipSync(Buffer.concat(pending))
    parts.push(m)
    off += m.length
    pending = []
  }
  const entries: Array<Record<string, unknown>> = []
  for (const f of files) {
    const type = f.type ?? 'reg'
    const data = f.data ?? Buffer.alloc(0)
    const flag = type === 'dir' ? '5' : type === 'symlink' ? '2' : type === 'hardlink' ? '1' : '0'
    pending.push(tarHeader(type === 'dir' ? f.name + '/' : f.name, type === 'reg' ? data.length : 0, flag, f.linkName))
    const ent: Record<string, unknown> = { name: f.name, type, mode: 0o644, modtime: '2024-01-02T03:04:05Z' }
    if (f.linkName !== undefined) ent.linkName = f.linkName
    if (type !== 'reg' || data.length === 0) {
      if (type === 'reg') ent.size = 0
      entries.push(ent)
      continue
    }
    ent.size = data.length
    ent.digest = sha(data)
    const cs = f.chunkSize ?? data.length
    for (let c = 0; c < data.length; c += cs) {
      flush()
      const chunk = data.subarray(c, Math.min(data.length, c + cs))
      const e: Record<string, unknown> = c === 0 ? ent : { name: f.name, type: 'chunk' }
      e.offset = off
      e.chunkOffset = c
      if (cs < data.length) e.chunkSize = chunk.length
      e.chunkDigest = sha(chunk)
      if (c > 0) entries.push(e)
      else entries.push(ent)
      pending.push(chunk)
    }
    pending.push(pad(data.length))
  }
  flush()
  const toc = { version: 1, entries }
  opts.mutateToc?.(toc)
  const tocJson = Buffer.from(JSON.stringify(toc, null, '\t'))
  const tocOffset = off
  const tocMember = gzipSync(Buffer.concat([tarHeader('stargz.index.json', tocJson.length, '0'), tocJson, pad(tocJson.length), Buffer.alloc(1024)]))
  parts.push(tocMember, footer(tocOffset, opts.legacy ?? false))
  return { blob: Buffer.concat(parts), tocJson, tocDigest: sha(tocJson), tocOffset, toc }
}

/** A RangeSource over a Buffer that counts what was read. */
export class BufferSource {
  bytesRead = 0
  reads = 0
  constructor(readonly buf: Buffer) {}
  get size(): number { return this.buf.length }
  async read(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.buf.length) throw new Error(`read [${offset}, +${length}) outside buffer of ${this.buf.length}`)
    this.bytesRead += length
    this.reads++
    return Buffer.from(this.buf.subarray(offset, offset + length))
  }
}
