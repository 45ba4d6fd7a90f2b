/**
 * Fuzz targets for the zstd workstream's formats (issue #15): zstd:chunked and external-TOC
 * eStargz. Same contract as targets.ts (return, or throw a StargzError), plus a stronger
 * invariant where the TOC is the writer's: any bytes a read returns are the right bytes.
 *
 * Mutations: the TOC JSON (re-packed in a valid zstd frame + skippable frame + footer, or a valid
 * external TOC member), footer fields (offsets, lengths, type, frame length), raw bytes anywhere,
 * bit flips in payload frames, payload frames replaced by skippable frames or by frames that
 * claim huge content sizes, and a TOC that belongs to another blob.
 */
import { Writable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { InvalidArgumentError, StargzError } from '../../src/errors.js'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { convertLayer } from '../../src/estargz/writer.js'
import { inlineDecoder } from '../../src/reader/inline-decoder.js'
import { zstdCompressFrame } from '../../src/estargz/zstd-codec.js'
import { skippableFrame, zstdFooterBytes, ZSTD_FOOTER_SIZE } from '../../src/estargz/zstd-format.js'
import { TOC_TAR_NAME, type RangeSource, type Toc } from '../../src/estargz/types.js'
import { ChunkReader } from '../../src/reader/chunk-reader.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { emptyHeader } from '../../src/tar/header.js'
import { encodeHeader, endOfArchive, paddingFor } from '../../src/tar/writer.js'
import { JSON_EDGE, mutateBytes, type Rng } from './mutate.js'
import type { Target } from './targets.js'

const typed = (e: unknown): boolean => e instanceof StargzError

class Sink extends Writable {
  readonly parts: Buffer[] = []
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void { this.parts.push(c); cb() }
}

class MemSource implements RangeSource {
  constructor(private readonly b: Buffer) {}
  get size(): number { return this.b.length }
  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.b.length) {
      throw new InvalidArgumentError(`read of ${length} bytes at offset ${offset} is outside the blob (size ${this.b.length})`)
    }
    return Buffer.from(this.b.subarray(offset, offset + length))
  }
}

function pattern(n: number, salt: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 131 + salt * 17 + (i >> 7)) & 0xff
  return b
}

function tarOf(files: Array<[string, Buffer]>): Buffer {
  const parts: Buffer[] = []
  for (const [name, data] of files) {
    const h = emptyHeader(name, '0')
    h.mode = 0o644
    h.mtime = 1_700_000_000
    h.size = data.length
    parts.push(encodeHeader(h), data, Buffer.alloc(paddingFor(data.length)))
  }
  parts.push(endOfArchive())
  return Buffer.concat(parts)
}

const TARS = [
  tarOf([['a.txt', Buffer.from('hello\n')], ['big.bin', pattern(20_000, 1)], ['b/c', pattern(700, 2)]]),
  tarOf([['x', pattern(9000, 3)], ['empty', Buffer.alloc(0)], ['y', Buffer.from('y'.repeat(5000))]]),
]

interface Seed {
  blob: Buffer
  /** Payload frames end here (TOC frame's skippable header, or the external footer). */
  payloadEnd: number
  toc: Toc
  /** Frame starts of payloads (chunk offsets), for frame-level forgeries. */
  offsets: number[]
  good: Map<string, Buffer>
  externalToc?: Buffer
}

async function makeSeed(tar: Buffer, i: number, kind: 'zstd' | 'external'): Promise<Seed> {
  const sink = new Sink()
  async function* input(): AsyncGenerator<Buffer> { yield tar }
  const r = await convertLayer(input(), sink, { chunkSize: 4096 * (1 + (i % 2)), concurrency: 1, compressionLevel: kind === 'zstd' ? 3 : 1, ...(kind === 'zstd' ? { zstdChunked: true } : { externalToc: true }) })
  const blob = Buffer.concat(sink.parts)
  const reader = await BlobReader.open(new MemSource(blob), r.externalToc ? { externalToc: r.externalToc } : {})
  const good = new Map<string, Buffer>()
  for (const e of reader.toc.entries) if (e.type === 'reg' && (e.size ?? 0) > 0) good.set(e.name, await reader.readFile(e.name))
  const offsets = [...new Set(reader.index.payloads.map((p) => p.compressedOffset))].sort((a, b) => a - b)
  const seed: Seed = { blob, payloadEnd: reader.footer.payloadEnd ?? reader.footer.tocOffset, toc: structuredClone(reader.toc), offsets, good }
  if (r.externalToc) seed.externalToc = r.externalToc
  return seed
}

function mutateTocJson(rng: Rng, toc: Toc): Buffer {
  const t = structuredClone(toc) as unknown as { version: unknown; entries: Array<Record<string, unknown>> }
  const fields = ['name', 'type', 'size', 'offset', 'chunkOffset', 'chunkSize', 'chunkDigest', 'digest', 'innerOffset']
  for (let k = 1 + rng.int(3); k > 0; k--) {
    const es = t.entries
    if (es.length === 0) break
    const e = rng.pick(es)
    const f = rng.pick(fields)
    if (rng.chance(0.3) && typeof e[f] === 'number') e[f] = (e[f] as number) + rng.pick([-1, 1, -4096, 4096, 2 ** 31])
    else if (rng.chance(0.3)) e[f] = rng.pick(es)[f]
    else e[f] = rng.pick(JSON_EDGE)
  }
  return Buffer.from(JSON.stringify(t))
}

function tocMember(json: Buffer): Buffer {
  const h = emptyHeader(TOC_TAR_NAME, '0')
  h.size = json.length
  h.mode = 0o644
  return gzipSync(Buffer.concat([encodeHeader(h), json, Buffer.alloc(paddingFor(json.length)), endOfArchive()]), { level: 1 })
}

/** Read a couple of files both ways; lengths must be exact, and with `strict` the bytes too. */
async function readSome(rng: Rng, blob: Buffer, seed: Seed, strict: boolean, externalToc?: Buffer): Promise<void> {
  const src = new MemSource(blob)
  const reader = await BlobReader.open(src, { limits: { maxTocBytes: 8 << 20, maxEntries: 10_000 }, ...(externalToc ? { externalToc } : {}) })
  const regs = [...reader.index.entries.values()].filter((e) => e.type === 'reg')
  const chunks = new ChunkReader({ reader: reader.meta, source: src, cache: new MemoryCache({ maxBytes: 1 << 20 }), decoder: inlineDecoder, readaheadBytes: 0 })
  for (let k = 0; k < Math.min(2, regs.length); k++) {
    const e = rng.pick(regs)
    const size = e.size ?? 0
    const off = rng.chance(0.2) ? rng.pick([0, size, size + 1, 2 ** 40]) : rng.int(size + 1)
    const len = rng.chance(0.2) ? rng.pick([0, 1, size, 2 ** 31]) : rng.int(size + 1)
    const want = Math.max(0, Math.min(size, off + len) - off)
    for (const [which, read] of [['BlobReader.readFile', () => reader.readFile(e.name, off, len)], ['ChunkReader.read', () => chunks.read(e.name, off, len)]] as const) {
      let got: Buffer
      try { got = await read() } catch (err) { if (typed(err)) continue; throw err }
      if (got.length !== want) throw new Error(`invariant: ${which}: read of ${len} at ${off} of ${e.name} (size ${size}) returned ${got.length} bytes; its TOC entries: ${JSON.stringify(reader.toc.entries.filter((x) => x.name === e.name))}`)
      const right = seed.good.get(e.name)
      if (strict && right && want > 0 && !got.equals(right.subarray(off, off + want))) throw new Error(`invariant: ${which}: wrong bytes from ${e.name} at ${off}`)
    }
  }
  if (rng.chance(0.1)) await reader.verifyAll({ concurrency: 2 }).catch((err: unknown) => { if (!typed(err)) throw err })
}

const zstdSeeds: Seed[] = []

export const zstdChunkedTarget: Target = {
  name: 'zstd:chunked',
  covers: 'zstd footer, TOC frame, chunk frames (src/estargz/zstd-*.ts, decoders)',
  async setup() {
    for (const [i, tar] of TARS.entries()) zstdSeeds.push(await makeSeed(tar, i, 'zstd'))
  },
  async run(rng) {
    const seed = rng.pick(zstdSeeds)
    const payload = seed.blob.subarray(0, seed.payloadEnd)
    let blob: Buffer
    let strict = false
    const mode = rng.int(5)
    if (mode === 0) {
      // A mutated TOC in a valid TOC frame and footer.
      const json = mutateTocJson(rng, seed.toc)
      const frame = zstdCompressFrame(json, 1)
      blob = Buffer.concat([payload, skippableFrame(frame), zstdFooterBytes(payload.length + 8, frame.length, json.length)])
    } else if (mode === 1) {
      // Footer fields: offsets, lengths, manifest type, frame length.
      blob = Buffer.from(seed.blob)
      const f = blob.length - ZSTD_FOOTER_SIZE
      const at = rng.pick([4, 8, 16, 24, 32])
      if (at === 4) blob.writeUInt32LE(rng.pick([0, 39, 41, 0xffffffff]), f + 4)
      else blob.writeBigUInt64LE(BigInt(rng.pick([0, 1, 7, 8, seed.payloadEnd, blob.length, 2 ** 53, Number.MAX_SAFE_INTEGER])) + BigInt(rng.int(3)), f + at)
    } else if (mode === 2) {
      blob = mutateBytes(rng, seed.blob, { focusStart: seed.payloadEnd, donor: rng.pick(zstdSeeds).blob })
    } else if (mode === 3) {
      // Payload bit flips with the TOC intact: a read that succeeds must give the right bytes.
      blob = Buffer.from(seed.blob)
      for (let k = 1 + rng.int(3); k > 0; k--) { const p = rng.int(seed.payloadEnd); blob[p] = (blob[p] as number) ^ (1 << rng.int(8)) }
      strict = true
    } else {
      // A payload frame replaced: by a skippable frame, by a frame claiming 2^40 bytes, or by
      // another chunk's frame (right codec, wrong bytes).
      blob = Buffer.from(seed.blob)
      const i = rng.int(seed.offsets.length)
      const start = seed.offsets[i] as number
      const end = seed.offsets[i + 1] ?? seed.payloadEnd
      const len = end - start
      let repl: Buffer
      const k = rng.int(3)
      if (k === 0) repl = skippableFrame(Buffer.alloc(Math.max(0, len - 8)))
      else if (k === 1) repl = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0, 0, 0, 0, 0, 1, 0, 0]), Buffer.alloc(len)])
      else { const s2 = rng.pick(seed.offsets); repl = Buffer.from(seed.blob.subarray(s2, s2 + len)) }
      repl.copy(blob, start, 0, len)
      strict = true
    }
    await readSome(rng, blob, seed, strict)
  },
  expected: typed,
}

const extSeeds: Seed[] = []

export const externalTocTarget: Target = {
  name: 'external-toc',
  covers: 'external-TOC footer and TOC blob (src/estargz/external-toc*.ts, toc-read.ts)',
  async setup() {
    for (const [i, tar] of TARS.entries()) extSeeds.push(await makeSeed(tar, i, 'external'))
  },
  async run(rng) {
    const seed = rng.pick(extSeeds)
    const other = rng.pick(extSeeds)
    let blob = seed.blob
    let toc = seed.externalToc as Buffer
    let strict = false
    const mode = rng.int(4)
    if (mode === 0) toc = tocMember(mutateTocJson(rng, seed.toc))
    else if (mode === 1) toc = mutateBytes(rng, toc, {})
    else if (mode === 2) { blob = Buffer.from(seed.blob); for (let k = 1 + rng.int(3); k > 0; k--) { const p = rng.int(seed.payloadEnd); blob[p] = (blob[p] as number) ^ (1 << rng.int(8)) } strict = true }
    else { toc = other.externalToc as Buffer; blob = mutateBytes(rng, seed.blob, { focusStart: seed.payloadEnd }) }
    await readSome(rng, blob, seed, strict, toc)
  },
  expected: typed,
}
