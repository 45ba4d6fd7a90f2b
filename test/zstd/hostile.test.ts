/**
 * Hostile zstd:chunked input: lying footers, damaged and swapped frames, skippable frames where
 * payload should be, frames that claim huge sizes, forged chunk digests. Every outcome is either
 * the right bytes or a typed StargzError — never other bytes, never an untyped throw.
 * Property tests (fast-check) start from the reference-made fixture tree-chunked.zst.
 */
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { parseFooter } from '../../src/estargz/footer.js'
import { isStargzError } from '../../src/errors.js'
import type { RangeSource, Toc } from '../../src/estargz/types.js'
import { skippableFrame, zstdFooterBytes, ZSTD_FOOTER_SIZE } from '../../src/estargz/zstd-format.js'
import { zstdCompressFrame } from '../../src/estargz/zstd-codec.js'
import { sha256Digest } from '../../src/estargz/toc-read.js'
import { WorkerChunkDecoder } from '../../src/reader/worker-decoder.js'
import { REPO } from '../../harness/cli.js'

const FX = join(REPO, 'test/fixtures/zstd')

function bufferSource(buf: Buffer): RangeSource {
  return {
    size: buf.length,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > buf.length) throw new RangeError(`read ${offset}+${length} outside ${buf.length}`)
      return Buffer.from(buf.subarray(offset, offset + length))
    },
  }
}

/** Payload of `blob` up to its TOC, with a new TOC frame and footer: what a forger would write. */
function withToc(payload: Buffer, json: Buffer): Buffer {
  const frame = zstdCompressFrame(json, 3)
  return Buffer.concat([payload, skippableFrame(frame), zstdFooterBytes(payload.length + 8, frame.length, json.length)])
}

interface Outcome { ok: number; typed: number; wrong: string[]; untyped: string[] }

/**
 * Open and read every regular file; compare with the known-good bytes. With `tocForged`, the TOC
 * itself is the forger's, so a file it declares shorter may be served shorter: every byte served
 * must still be the right one.
 */
async function readAll(blob: Buffer, good: Map<string, Buffer>, decoder?: WorkerChunkDecoder, tocForged = false): Promise<Outcome> {
  const o: Outcome = { ok: 0, typed: 0, wrong: [], untyped: [] }
  const note = (e: unknown, what: string): void => {
    if (isStargzError(e)) o.typed++
    else o.untyped.push(`${what}: ${String(e)}`)
  }
  let r: BlobReader
  try {
    r = await BlobReader.open(bufferSource(blob), decoder ? { decoder } : {})
  } catch (e) { note(e, 'open'); return o }
  for (const [name, want] of good) {
    try {
      const got = await r.readFile(name)
      if (got.equals(want) || (tocForged && got.length < want.length && got.equals(want.subarray(0, got.length)))) o.ok++
      else o.wrong.push(name)
    } catch (e) { note(e, name) }
  }
  return o
}

t.test('hostile zstd:chunked input never yields wrong bytes or untyped errors', async (t) => {
  const blob = await readFile(join(FX, 'tree-chunked.zst'))
  const r0 = await BlobReader.open(bufferSource(blob))
  const good = new Map<string, Buffer>()
  for (const e of r0.toc.entries) if (e.type === 'reg' && (e.size ?? 0) > 0) good.set(e.name, await r0.readFile(e.name))
  const payloadEnd = r0.footer.payloadEnd ?? 0
  const payload = blob.subarray(0, payloadEnd)
  const tocJson = JSON.parse(await readFile(join(FX, 'tree-chunked.toc.json'), 'utf8')) as Toc
  const offsets = [...new Set(tocJson.entries.filter((e) => e.offset !== undefined).map((e) => e.offset as number))].sort((a, b) => a - b)
  const pool = new WorkerChunkDecoder({ syncBelowBytes: 0 })
  t.teardown(() => pool.close())

  // fast-check shrinks a failing case; the last (smallest) one is what the assertion reports.
  let lastBad: unknown
  const check = (o: Outcome, what: string): boolean => {
    if (o.wrong.length > 0 || o.untyped.length > 0) { lastBad = { what, wrong: o.wrong, untyped: o.untyped }; return false }
    return true
  }
  const holds = async <T>(t: Test, p: fc.IAsyncPropertyWithHooks<T>, runs: number, what: string): Promise<void> => {
    lastBad = undefined
    const r = await fc.check(p, { numRuns: runs })
    t.notOk(r.failed, `${runs} ${what}: right bytes or a typed error`, r.failed ? { counterexample: r.counterexample, seed: r.seed, lastBad, error: String(r.errorInstance) } : {})
  }

  await t.test('footer fields: any lie is a FooterError or a bounded footer', async (t) => {
    await holds(t, fc.asyncProperty(
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffffffff }),
      async (off, clen, rlen, type, frameLen) => {
        const f = Buffer.from(blob.subarray(blob.length - ZSTD_FOOTER_SIZE))
        f.writeUInt32LE(frameLen % 3 === 0 ? 40 : frameLen, 4)
        f.writeBigUInt64LE(off, 8); f.writeBigUInt64LE(clen, 16); f.writeBigUInt64LE(rlen, 24); f.writeBigUInt64LE(BigInt(type), 32)
        const forged = Buffer.concat([blob.subarray(0, blob.length - ZSTD_FOOTER_SIZE), f])
        try {
          const p = parseFooter(forged.subarray(forged.length - 51), forged.length)
          if (p.tocOffset + (p.tocLength ?? 0) > forged.length - ZSTD_FOOTER_SIZE) return false
        } catch (e) { if (!isStargzError(e) || e.code !== 'ERR_FOOTER_INVALID') return false }
        const o = await readAll(forged, good)
        return o.wrong.length === 0 && o.untyped.length === 0
      }), 150, 'forged footers')
  })

  await t.test('damaged bytes anywhere in the blob', async (t) => {
    await holds(t, fc.asyncProperty(
      fc.array(fc.tuple(fc.integer({ min: 0, max: blob.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.boolean(),
      async (edits, viaWorkers) => {
        const b = Buffer.from(blob)
        for (const [i, v] of edits) b[i] = v
        const o = await readAll(b, good, viaWorkers ? pool : undefined)
        return check(o, `edits ${JSON.stringify(edits)}`)
      }), 200, 'damaged blobs')
  })

  await t.test('frames swapped, replaced by skippable frames, or claiming huge sizes', async (t) => {
    const frameAt = fc.integer({ min: 0, max: offsets.length - 1 })
    const kind = fc.constantFrom('skippable', 'huge-fcs', 'swap', 'truncate', 'empty-frame', 'huge-skippable')
    await holds(t, fc.asyncProperty(frameAt, frameAt, kind, async (i, j, k) => {
      const start = offsets[i] as number
      const end = offsets[i + 1] ?? payloadEnd
      const member = payload.subarray(start, end)
      let repl: Buffer
      switch (k) {
        case 'skippable': repl = skippableFrame(Buffer.alloc(Math.max(0, member.length - 8), 0x41)); break
        case 'huge-skippable': { repl = Buffer.from(member); repl.writeUInt32LE(0x184d2a50, 0); repl.writeUInt32LE(0xfffffff0, 4); break }
        case 'huge-fcs': {
          // A frame whose header claims 2^40 bytes of content (FCS field of 8 bytes) then ends.
          const h = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0, 0, 0, 0, 0, 1, 0, 0])
          repl = Buffer.concat([h, Buffer.alloc(Math.max(0, member.length - h.length))]).subarray(0, member.length)
          break
        }
        case 'swap': { const s2 = offsets[j] as number; repl = Buffer.from(payload.subarray(s2, Math.min(payloadEnd, s2 + member.length))); break }
        case 'truncate': repl = Buffer.concat([member.subarray(0, member.length >> 1), Buffer.alloc(member.length - (member.length >> 1))]); break
        default: repl = Buffer.concat([zstdCompressFrame(Buffer.alloc(0), 1), Buffer.alloc(member.length)]).subarray(0, member.length)
      }
      const b = Buffer.from(blob)
      repl.subarray(0, member.length).copy(b, start)
      return check(await readAll(b, good, j % 2 === 0 ? pool : undefined), `${k} at frame ${i}`)
    }), 120, 'frame-level forgeries')
  })

  await t.test('forged TOC: chunk digests, sizes and offsets', async (t) => {
    await holds(t, fc.asyncProperty(
      fc.integer({ min: 0, max: tocJson.entries.length - 1 }),
      fc.constantFrom('chunkDigest', 'digest', 'chunkSize', 'offset', 'size'),
      fc.integer({ min: 0, max: 2 ** 31 }),
      async (idx, field, v) => {
        const toc = JSON.parse(JSON.stringify(tocJson)) as Toc
        const e = toc.entries[idx]
        if (!e) return true
        if (field === 'chunkDigest' || field === 'digest') e[field] = sha256Digest(Buffer.from(String(v)))
        else e[field] = v
        const forged = withToc(payload, Buffer.from(JSON.stringify(toc)))
        return check(await readAll(forged, good, v % 2 === 0 ? pool : undefined, true), `${field}=${v} on entry ${idx}`)
      }), 150, 'forged TOCs')
  })

  await t.test('a forged chunk digest is a ChunkDigestError naming the file', async (t) => {
    const toc = JSON.parse(JSON.stringify(tocJson)) as Toc
    const e = toc.entries.find((x) => x.type === 'chunk')
    if (!e) { t.fail('fixture has chunk entries'); return }
    e.chunkDigest = sha256Digest(Buffer.from('forged'))
    const r = await BlobReader.open(bufferSource(withToc(payload, Buffer.from(JSON.stringify(toc)))))
    await t.rejects(r.readFile(e.name), { code: 'ERR_CHUNK_DIGEST_MISMATCH', message: new RegExp(e.name.replace(/\./g, '\\.')) })
    const viaPool = await BlobReader.open(bufferSource(withToc(payload, Buffer.from(JSON.stringify(toc)))), { decoder: pool })
    await t.rejects(viaPool.readFile(e.name), { code: 'ERR_CHUNK_DIGEST_MISMATCH' }, 'the same through the worker pool')
  })

  await t.test('a TOC that does not match the toc.digest annotation is refused', async (t) => {
    await t.rejects(BlobReader.open(bufferSource(blob), { tocDigest: sha256Digest(Buffer.from('other')) }), { code: 'ERR_TOC_DIGEST_MISMATCH' })
  })
})
