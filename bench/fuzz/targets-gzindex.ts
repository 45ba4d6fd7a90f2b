/**
 * Fuzz target for the gzip index (issue #16): the index blob a stranger may publish next to an
 * image (src/gzindex/format.ts decodeIndex), and every read through it (GzIndexReader: spans
 * re-framed and inflated from their checkpoints, file pieces checked against their digests).
 *
 * Contract: decode and reads return, or throw a StargzError; and — the stronger invariant the
 * issue asks for — any bytes a read returns are the right bytes of that file, whatever the index
 * says (forged offsets, windows, lengths, digests, names), since the layer itself is honest here.
 *
 * Mutations: header fields of spans and files (edge values, off-by-a-bit, values of another entry),
 * re-encoded in a valid envelope (so they reach the reader); raw bytes of the envelope; the
 * checkpoint windows; and bit flips in the layer with the honest index.
 */
import { gunzipSync, gzipSync } from 'node:zlib'
import { createHash } from 'node:crypto'
import { InvalidArgumentError, StargzError } from '../../src/errors.js'
import type { RangeSource } from '../../src/estargz/types.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { buildIndex } from '../../src/gzindex/build.js'
import { decodeIndex, encodeIndex, type GzIndexHeader } from '../../src/gzindex/format.js'
import { cleanName, GzIndexReader } from '../../src/gzindex/reader.js'
import { emptyHeader } from '../../src/tar/header.js'
import { encodeHeader, endOfArchive, paddingFor } from '../../src/tar/writer.js'
import { JSON_EDGE, mutateBytes, type Rng } from './mutate.js'
import type { Target } from './targets.js'

const typed = (e: unknown): boolean => e instanceof StargzError

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

/** Compressible but not trivially so: back-references reach into checkpoint windows. */
function text(n: number, salt: number): Buffer {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta', String(salt)]
  let s = ''
  let x = salt + 1
  while (s.length < n) { x = (x * 1103515245 + 12345) >>> 0; s += words[x % words.length] + (x % 7 === 0 ? '\n' : ' ') }
  return Buffer.from(s.slice(0, n))
}

function noise(n: number, salt: number): Buffer {
  const b = Buffer.alloc(n)
  let x = salt
  for (let i = 0; i < n; i++) { x = (x * 1664525 + 1013904223) >>> 0; b[i] = x >>> 24 }
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

interface Seed { layer: Buffer; desc: { digest: string; size: number }; header: GzIndexHeader; windows: Buffer[]; blob: Buffer; good: Map<string, Buffer> }

export const seeds: Seed[] = []

async function makeSeed(files: Array<[string, Buffer]>, layer: Buffer): Promise<Seed> {
  const desc = { digest: `sha256:${createHash('sha256').update(layer).digest('hex')}`, size: layer.length }
  async function* once(): AsyncGenerator<Buffer> { yield layer }
  const built = await buildIndex(once(), { layer: desc, spacing: 64 * 1024, fileChunk: 64 * 1024 })
  return { layer, desc, header: built.header, windows: built.windows, blob: built.blob, good: new Map(files.map(([n, d]) => [cleanName(n), d])) }
}

export function mutateHeader(rng: Rng, h: GzIndexHeader): void {
  const spanFields = ['startBit', 'endBit', 'u', 'length', 'final', 'windowLen', 'sha256', 'crc'] as const
  const fileFields = ['name', 'type', 'size', 'offset', 'sha256', 'chunks', 'linkName'] as const
  for (let k = 1 + rng.int(3); k > 0; k--) {
    const onSpan = rng.chance(0.5) && h.spans.length > 0
    const list = (onSpan ? h.spans : h.files) as unknown as Array<Record<string, unknown>>
    if (list.length === 0) continue
    const e = rng.pick(list)
    const f = onSpan ? rng.pick(spanFields) : rng.pick(fileFields)
    const v = e[f]
    const r = rng.int(4)
    if (r === 0 && typeof v === 'number') e[f] = v + rng.pick([-2, -1, 1, 2, 8, -512, 512, 65536, 2 ** 31])
    else if (r === 1) e[f] = rng.pick(list)[f]
    else if (r === 2 && Array.isArray(v) && v.length > 0) { const c = [...v]; c[rng.int(c.length)] = rng.pick(h.files.flatMap((x) => x.chunks ?? [x.sha256 ?? ''])); e[f] = c }
    else e[f] = rng.pick(JSON_EDGE)
  }
  if (rng.chance(0.1)) (h as unknown as Record<string, unknown>)[rng.pick(['uncompressedSize', 'spacing', 'fileChunk'])] = rng.pick(JSON_EDGE)
}

/** Decode, then read a few files; every byte returned must be the file's own. */
async function readSome(rng: Rng, blob: Buffer, seed: Seed, layer: Buffer = seed.layer): Promise<void> {
  let index
  try { index = decodeIndex(blob, seed.desc) } catch (e) { if (typed(e)) return; throw e }
  const reader = new GzIndexReader(index, new MemSource(layer), { cache: new MemoryCache({ maxBytes: 4 << 20 }) })
  const regs = index.files.filter((f) => f.type === 'reg')
  for (let k = 0; k < Math.min(3, regs.length); k++) {
    const f = rng.pick(regs)
    const off = rng.chance(0.2) ? rng.pick([0, f.size, f.size + 1, 2 ** 40]) : rng.int(f.size + 1)
    const len = rng.chance(0.2) ? rng.pick([0, 1, f.size, 2 ** 31]) : rng.int(f.size + 1)
    const want = Math.max(0, Math.min(f.size, off + len) - off)
    let got: Buffer
    try { got = await reader.read(f, off, len) } catch (e) { if (typed(e)) continue; throw e }
    if (got.length !== want) throw new Error(`invariant: read of ${len} at ${off} of ${f.name} (size ${f.size}) returned ${got.length} bytes`)
    const right = seed.good.get(cleanName(f.name))
    if (want > 0 && (right === undefined || !got.equals(right.subarray(off, off + want)))) {
      throw new Error(`invariant: wrong bytes from ${JSON.stringify(f.name)} at ${off} (${want} bytes; the layer has ${right === undefined ? 'no such file' : `${right.length} bytes`})`)
    }
  }
}

export const gzindexTarget: Target = {
  name: 'gzindex',
  covers: 'gzip index blob and reads through it (src/gzindex/format.ts, reader.ts, span-inflate.ts)',
  async setup() {
    const a: Array<[string, Buffer]> = [['etc/hello.txt', Buffer.from('hello\n')], ['usr/lib/text.txt', text(300_000, 1)], ['usr/lib/noise.bin', noise(150_000, 2)], ['usr/lib/more.txt', text(90_000, 3)]]
    seeds.push(await makeSeed(a, gzipSync(tarOf(a), { level: 6 })))
    // Two members (checkpoints at a member start, windows empty there) and a stored-heavy level.
    const b: Array<[string, Buffer]> = [['x', text(120_000, 4)], ['y', noise(70_000, 5)], ['z', text(200_000, 6)]]
    const tb = tarOf(b)
    seeds.push(await makeSeed(b, Buffer.concat([gzipSync(tb.subarray(0, 100_000), { level: 1 }), gzipSync(tb.subarray(100_000), { level: 9 })])))
  },
  async run(rng) {
    const seed = rng.pick(seeds)
    const mode = rng.int(4)
    if (mode === 0) {
      const h = structuredClone(seed.header)
      mutateHeader(rng, h)
      await readSome(rng, encodeIndex(h, seed.windows), seed)
    } else if (mode === 1) {
      await readSome(rng, mutateBytes(rng, seed.blob, { donor: rng.pick(seeds).blob }), seed)
    } else if (mode === 2) {
      // Windows (and anything else in the body) changed with the envelope checksum recomputed.
      const raw = gunzipSync(seed.blob)
      const body = mutateBytes(rng, raw.subarray(0, raw.length - 32), { focusStart: Math.max(0, raw.length - 32 - seed.windows.reduce((n, w) => n + w.length, 0)) })
      await readSome(rng, gzipSync(Buffer.concat([body, createHash('sha256').update(body).digest()])), seed)
    } else {
      const layer = Buffer.from(seed.layer)
      for (let k = 1 + rng.int(3); k > 0; k--) { const p = rng.int(layer.length); layer[p] = (layer[p] as number) ^ (1 << rng.int(8)) }
      await readSome(rng, seed.blob, seed, layer)
    }
  },
  expected: typed,
}
