/** In-memory tars built with our header writer, and an in-memory eStargz conversion. */
import { Writable } from 'node:stream'
import { emptyHeader, type EntryType, type TarHeader } from '../src/tar/header.js'
import { encodeHeader, endOfArchive, paddingFor } from '../src/tar/writer.js'
import { convertLayer, type ConvertOptions, type ConvertResult } from '../src/estargz/writer.js'

export interface MemEntry extends Partial<Omit<TarHeader, 'xattrs'>> {
  name: string
  type?: EntryType
  content?: Buffer | string
  xattrs?: Record<string, Buffer | string>
}

export function memTar(entries: MemEntry[], opts: { endBlocks?: boolean } = {}): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    const h = emptyHeader(e.name, e.type ?? '0')
    const content = e.content === undefined ? Buffer.alloc(0) : Buffer.from(e.content)
    Object.assign(h, { ...e, xattrs: h.xattrs })
    h.typeflag = e.type ?? '0'
    h.size = h.typeflag === '0' ? content.length : 0
    for (const [k, v] of Object.entries(e.xattrs ?? {})) h.xattrs.set(k, Buffer.from(v))
    parts.push(encodeHeader(h))
    if (h.size > 0) parts.push(content, Buffer.alloc(paddingFor(h.size)))
  }
  if (opts.endBlocks !== false) parts.push(endOfArchive())
  return Buffer.concat(parts)
}

export async function* chunksOf(buf: Buffer, size = 65536): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size)
}

export class Collector extends Writable {
  readonly parts: Buffer[] = []
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.parts.push(chunk)
    cb()
  }
  get data(): Buffer { return Buffer.concat(this.parts) }
}

export async function convertBuffer(input: Buffer, opts: ConvertOptions = {}): Promise<{ blob: Buffer; result: ConvertResult }> {
  const out = new Collector()
  const result = await convertLayer(chunksOf(input), out, opts)
  return { blob: out.data, result }
}
