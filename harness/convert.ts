/** Shared helpers for the eStargz writer tests: convert files, walk gzip members, read the TOC. */
import { createReadStream, createWriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { inflateRawSync } from 'node:zlib'
import { convertLayer, type ConvertOptions, type ConvertResult } from '../src/estargz/writer.js'
import type { Toc } from '../src/estargz/types.js'

export async function convertFile(inFile: string, outFile: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  return convertLayer(createReadStream(inFile), createWriteStream(outFile), opts)
}

export interface Member { offset: number; length: number; data: Buffer }

/** Splits a blob into its gzip members (parsing each header and deflate stream). */
export function gzipMembers(blob: Buffer): Member[] {
  const out: Member[] = []
  let pos = 0
  while (pos < blob.length) {
    if (blob[pos] !== 0x1f || blob[pos + 1] !== 0x8b || blob[pos + 2] !== 8) throw new Error(`no gzip member at ${pos}`)
    const flg = blob[pos + 3] as number
    let p = pos + 10
    if (flg & 4) p += 2 + blob.readUInt16LE(p)
    if (flg & 8) p = blob.indexOf(0, p) + 1
    if (flg & 16) p = blob.indexOf(0, p) + 1
    if (flg & 2) p += 2
    const r = inflateRawSync(blob.subarray(p), { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } }
    const end = p + r.engine.bytesWritten + 8
    out.push({ offset: pos, length: end - pos, data: r.buffer })
    pos = end
  }
  return out
}

/** The TOC JSON bytes of a blob, found through its footer. */
export function tocOf(blob: Buffer, footerSize = 51): { toc: Toc; json: Buffer; tocOffset: number } {
  const footer = blob.subarray(blob.length - footerSize)
  const hex = footerSize === 51 ? footer.toString('latin1', 16, 32) : footer.toString('latin1', 12, 28)
  const tocOffset = parseInt(hex, 16)
  const members = gzipMembers(blob.subarray(tocOffset, blob.length - footerSize))
  const tarBytes = (members[0] as Member).data
  const size = parseInt(tarBytes.toString('latin1', 124, 136).replace(/\0.*$/, '').trim(), 8)
  const json = tarBytes.subarray(512, 512 + size)
  return { toc: JSON.parse(json.toString('utf8')) as Toc, json, tocOffset }
}

export async function readBlob(path: string): Promise<Buffer> {
  return readFile(path)
}
