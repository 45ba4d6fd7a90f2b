// stargzd-test: unit
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { crc32, gzipSync, inflateRawSync } from 'node:zlib'
import { buildIndex } from '../../src/gzindex/build.js'
import { decodeIndex, encodeIndex, type GzIndexHeader } from '../../src/gzindex/format.js'
import { GzIndexReader } from '../../src/gzindex/reader.js'
import { spanByteRange, spanMember } from '../../src/gzindex/span-inflate.js'
import { WorkerChunkDecoder } from '../../src/reader/worker-decoder.js'
import type { RangeSource } from '../../src/estargz/types.js'
import { tarOf } from '../../harness/image.js'

// A forged index (offsets, windows, lengths, digests, layer) is refused at decode or gives an
// error at read (EIO in a mount), never bytes other than the layer's.
const text = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `line ${i} of a compressible file\n`).join(''))
const tar = tarOf([
  { name: 'text.txt', data: text },
  { name: 'rand.bin', data: randomBytes(300_000) },
])
const layer = gzipSync(tar, { level: 6 })
const desc = { digest: `sha256:${createHash('sha256').update(layer).digest('hex')}`, size: layer.length }
const source: RangeSource = { size: layer.length, read: async (o, l) => layer.subarray(o, o + l) }
async function* once(b: Buffer): AsyncGenerator<Buffer> { yield b }
const built = await buildIndex(once(layer), { layer: desc, spacing: 64 * 1024, fileChunk: 64 * 1024 })
const good = decodeIndex(built.blob, desc)
t.ok(good.spans.length >= 4, `${good.spans.length} spans`)
t.ok(good.spans.some((s) => s.startBit % 8 !== 0), 'some checkpoint is not byte-aligned (re-alignment exercised)')
t.ok(good.files.some((f) => (f.chunks?.length ?? 0) > 2), 'files are verified in several pieces')
const pool = new WorkerChunkDecoder()
t.teardown(() => pool.close())

function forge(edit: (h: GzIndexHeader, w: Buffer[]) => void): Buffer {
  const h = structuredClone(built.header)
  const w = built.windows.map((b) => Buffer.from(b))
  edit(h, w)
  return encodeIndex(h, w)
}

/** Every regular file's bytes, read through the index (span and file digests checked). */
async function readAll(blob: Buffer, withPool = false): Promise<Buffer> {
  const r = new GzIndexReader(decodeIndex(blob, desc), source, withPool ? { decoder: pool } : {})
  const parts: Buffer[] = []
  for (const f of r.index.files) if (f.type === 'reg') parts.push(Buffer.from(f.name), await r.read(f, 0, f.size))
  return Buffer.concat(parts)
}
const honest = Buffer.concat([Buffer.from('text.txt'), text, Buffer.from('rand.bin'), tar.subarray(512 * 2 + Math.ceil(text.length / 512) * 512, 512 * 2 + Math.ceil(text.length / 512) * 512 + 300_000)])

t.test('the honest index reads every file (this thread and the decode pool)', async (t) => {
  t.ok((await readAll(built.blob)).equals(honest))
  t.ok((await readAll(built.blob, true)).equals(honest))
})

/** Re-hash span i as a forger would after editing its window: digest and CRC agree with the window. */
function recomputeSpan(h: GzIndexHeader, w: Buffer[], i: number): void {
  const s = h.spans[i]!
  const r = spanByteRange(s)
  const m = spanMember(s, layer.subarray(r.offset, r.offset + r.length), w[i]!)
  const out = inflateRawSync(m.subarray(10, m.length - 8))
  s.sha256 = createHash('sha256').update(out).digest('hex')
  s.crc = crc32(out)
}

const midSpan = good.spans.findIndex((s, i) => i > 0 && s.windowLen > 0 && !s.final)
const cases: Array<[string, (h: GzIndexHeader, w: Buffer[]) => void]> = [
  ['window byte flipped', (_h, w) => { w[midSpan]![100]! ^= 0x55 }],
  ['window zeroed', (_h, w) => { w[midSpan]!.fill(0) }],
  ['checkpoint moved by 2 bits', (h) => { h.spans[midSpan]!.startBit += 2 }],
  ['checkpoint moved by 8 bits', (h) => { h.spans[midSpan]!.startBit += 8 }],
  ['span end moved', (h) => { h.spans[midSpan]!.endBit -= 16 }],
  ['span digest replaced', (h) => { h.spans[midSpan]!.sha256 = 'a'.repeat(64) }],
  ['span length +1 (next span shifted too)', (h) => { h.spans[midSpan]!.length += 1; h.spans[midSpan + 1]!.length -= 1; h.spans[midSpan + 1]!.u += 1 }],
  ['file offset moved', (h) => { const f = h.files.find((x) => x.type === 'reg')!; f.offset += 1 }],
  ['file offset moved by a tar block', (h) => { const f = h.files.find((x) => x.type === 'reg')!; f.offset += 512 }],
  ['span CRC replaced', (h) => { h.spans[midSpan]!.crc = (h.spans[midSpan]!.crc + 1) >>> 0 }],
  ['final flag dropped', (h) => { h.spans[h.spans.length - 1]!.final = false }],
]
const CODES = /^ERR_(TOC_INVALID|CHUNK_DIGEST_MISMATCH|INVALID_ARGUMENT|FETCH)/
for (const [name, edit] of cases) {
  for (const withPool of [false, true]) {
    t.test(`forged: ${name} → refused, read error, or the right bytes; never wrong bytes${withPool ? ' (decode pool)' : ''}`, async (t) => {
      let got: Buffer
      try { got = await readAll(forge(edit), withPool) } catch (e) { t.match((e as { code?: string }).code, CODES, `${name}: ${(e as Error).message}`); return }
      // A forgery that changes nothing served (a final flag whose terminator comes after the
      // real end) is harmless: the bytes are the layer's.
      t.ok(got.equals(honest), `${name}: bytes served are the layer's`)
    })
  }
}

t.test('a forged window is an error even when no back-reference reaches the changed byte', async (t) => {
  await t.rejects(readAll(forge((_h, w) => { w[midSpan]![0]! ^= 1 })), { code: CODES })
  await t.rejects(readAll(forge((_h, w) => { w[midSpan]![0]! ^= 1 }), true), { code: CODES })
})

t.test('a forged window with the span digest and CRC recomputed: the file digests catch it', async (t) => {
  const blob = forge((h, w) => { w[midSpan]!.fill(0x41); recomputeSpan(h, w, midSpan) })
  const r = new GzIndexReader(decodeIndex(blob, desc), source)
  // The span itself now "verifies": what it holds differs from the layer only where the window is referenced.
  await r.span(midSpan)
  await t.rejects(readAll(blob), { code: 'ERR_CHUNK_DIGEST_MISMATCH' })
})

t.test('replaced file digests: every read of that file fails, others still read', async (t) => {
  const first = (h: GzIndexHeader) => h.files.find((x) => x.type === 'reg' && x.chunks !== undefined)!
  for (const [what, edit] of [
    ['whole-file digest of a one-piece file', (h: GzIndexHeader) => { const f = h.files.find((x) => x.type === 'reg' && x.chunks === undefined); if (f) f.sha256 = 'b'.repeat(64) }],
    ['one piece digest', (h: GzIndexHeader) => { first(h).chunks![1] = 'c'.repeat(64) }],
  ] as const) {
    const r = new GzIndexReader(decodeIndex(forge(edit), desc), source)
    const h = structuredClone(built.header); edit(h)
    const f = r.index.files.find((x, i) => x.type === 'reg' && (x.sha256 !== built.header.files[i]!.sha256 || JSON.stringify(x.chunks) !== JSON.stringify(built.header.files[i]!.chunks)))
    if (!f) { t.pass(`${what}: no such file in this layer`); continue }
    const piece = f.chunks === undefined ? 0 : f.chunks.findIndex((c, k) => c !== built.header.files.find((x) => x.name === f.name)!.chunks![k])
    await t.rejects(r.read(f, piece * built.header.fileChunk, 10), { code: 'ERR_CHUNK_DIGEST_MISMATCH' }, `${what}: read refused`)
    await t.rejects(r.readVerified(f), { code: 'ERR_CHUNK_DIGEST_MISMATCH' }, `${what}: whole read refused`)
  }
})

t.test('decode refuses structural forgeries', async (t) => {
  t.throws(() => decodeIndex(forge((h) => { h.spans[1]!.startBit += 1 }), desc), /odd bit/)
  t.throws(() => decodeIndex(forge((h) => { h.spans[1]!.u += 5 }), desc), /starts at uncompressed/)
  t.throws(() => decodeIndex(forge((h) => { h.spans[0]!.length = 1 << 30 }), desc), /length/)
  t.throws(() => decodeIndex(forge((h) => { h.spans[1]!.endBit = layer.length * 8 + 8 }), desc), /past the layer/)
  t.throws(() => decodeIndex(forge((h) => { h.files[0]!.size = 1e12 }), desc), /past the uncompressed/)
  t.throws(() => decodeIndex(built.blob, { digest: desc.digest, size: desc.size + 1 }), /not sha256/)
  t.throws(() => decodeIndex(forge((h) => { const f = h.files.find((x) => x.chunks !== undefined)!; f.chunks!.pop() }), desc), /chunk digests expected/)
  t.throws(() => decodeIndex(forge((h) => { h.fileChunk = 100 }), desc), /file chunk/)
  t.throws(() => decodeIndex(forge((h) => { h.spans[1]!.windowLen = h.spans[1]!.windowLen + 1 }), desc), /window/)
  const raw = Buffer.from(built.blob)
  raw[raw.length - 12]! ^= 1
  t.throws(() => decodeIndex(raw, desc), /gzip index/)
  const { gunzipSync } = await import('node:zlib')
  const plain = gunzipSync(built.blob)
  plain[20]! ^= 1
  t.throws(() => decodeIndex(gzipSync(plain), desc), /checksum mismatch/)
})

t.test('a corrupted layer byte gives a digest or inflate error, never bytes', async (t) => {
  const bad = Buffer.from(layer)
  const s = good.spans[midSpan]!
  bad[Math.floor(s.startBit / 8) + 200]! ^= 0x10
  const r = new GzIndexReader(good, { size: bad.length, read: async (o, l) => bad.subarray(o, o + l) })
  await t.rejects(r.span(midSpan))
})
