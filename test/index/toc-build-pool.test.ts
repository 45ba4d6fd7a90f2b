import t from 'tap'
import { gzipSync } from 'node:zlib'
import { writeFooter } from '../../src/estargz/footer-writer.js'
import { MetadataBudget } from '../../src/estargz/metadata-budget.js'
import { sha256Digest } from '../../src/estargz/toc-read.js'
import { serializeToc } from '../../src/estargz/toc-json.js'
import type { RangeSource, TocEntry } from '../../src/estargz/types.js'
import { TocBuildPool } from '../../src/index/toc-build-pool.js'
import { loadCompactToc, type CompactTocOptions } from '../../src/index/toc-build.js'

// Issues #12/#13: the TOC → CompactIndex build in a worker must be indistinguishable from the
// inline one: the same index bytes, the same typed errors (class, code, rule, message, fields),
// the same budget accounting; and the pool's threads end with close().

const TOC_OFFSET = 100_000
const DIGEST = (i: number): string => 'sha256:' + i.toString(16).padStart(64, '0')

function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512)
  h.write(name, 0, 'utf8')
  h.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1')
  return h
}

/** An eStargz-shaped blob: TOC_OFFSET payload bytes, the TOC member (or `member`), the footer. */
function blobOf(json: Buffer, member?: Buffer): Buffer {
  const m = member ?? gzipSync(Buffer.concat([tarHeader('stargz.index.json', json.length), json, Buffer.alloc((512 - (json.length % 512)) % 512)]))
  return Buffer.concat([Buffer.alloc(TOC_OFFSET), m, writeFooter(TOC_OFFSET)])
}

function source(blob: Buffer): RangeSource {
  return { size: blob.length, read: async (off, len) => Buffer.from(blob.subarray(off, off + len)) }
}

function manyEntries(n: number): TocEntry[] {
  const out: TocEntry[] = [{ name: 'd', type: 'dir' }]
  for (let i = 0; i < n; i++) out.push({ name: `d/f${i}`, type: 'reg', size: 3, offset: 10 + 40 * i, chunkDigest: DIGEST(i + 1), digest: DIGEST(i + 1) })
  return out
}

type Outcome = { ok: true; bytes: Buffer; tocDigest: string; jsonBytes: number } | { ok: false; err: Record<string, unknown> }

function describe(e: unknown): Record<string, unknown> {
  const x = e as Record<string, unknown> & Error
  const cause = x.cause as (Error & { code?: string }) | undefined
  return {
    cls: x.constructor.name, name: x.name, message: x.message, code: x.code, rule: x.rule, entry: x.entry, expected: x.expected, actual: x.actual,
    cause: cause === undefined ? undefined : { name: cause.name, message: cause.message, code: cause.code },
  }
}

async function outcome(blob: Buffer, opts: CompactTocOptions): Promise<Outcome> {
  try {
    const r = await loadCompactToc(source(blob), opts)
    const bytes = Buffer.from(r.index.bytes())
    r.index.close()
    return { ok: true, bytes, tocDigest: r.tocDigest, jsonBytes: r.jsonBytes }
  } catch (e) {
    return { ok: false, err: describe(e) }
  }
}

t.test('worker path: same index bytes and same typed errors as inline, for good and hostile TOCs', async (t) => {
  const pool = new TocBuildPool()
  t.teardown(() => pool.close())
  pool.warm()
  const good = serializeToc(manyEntries(2000))
  const bad = (entries: TocEntry[]): Buffer => serializeToc(entries)
  const member = gzipSync(Buffer.concat([tarHeader('stargz.index.json', good.length), good]))
  const cases: Array<[string, Buffer, CompactTocOptions]> = [
    ['good', blobOf(good), {}],
    ['good, digest given', blobOf(good), { tocDigest: sha256Digest(good) }],
    ['tiny', blobOf(serializeToc([{ name: 'a', type: 'reg', size: 3, offset: 10, chunkDigest: DIGEST(1) }])), {}],
    ['name-escape', blobOf(bad([{ name: '../x', type: 'reg' }])), {}],
    ['offset-range', blobOf(bad([{ name: 'a', type: 'reg', size: 3, offset: 200_000, chunkDigest: DIGEST(1) }])), {}],
    ['hardlink-target', blobOf(bad([{ name: 'a', type: 'hardlink', linkName: 'nope' }])), {}],
    ['duplicate-name', blobOf(bad([{ name: 'a', type: 'dir' }, { name: './a', type: 'dir' }])), {}],
    ['version', blobOf(Buffer.from('{"version": 2, "entries": []}')), {}],
    ['truncated JSON', blobOf(Buffer.from('{"version": 1, "entries": [{"name": "a", ')), {}],
    ['digest wins over malformed', blobOf(Buffer.from('{"version": 1, "entries": [{"name": "../x", "type": "reg"}]}')), { tocDigest: sha256Digest(good) }],
    ['digest mismatch of a good TOC', blobOf(good), { tocDigest: DIGEST(7) }],
    ['maxEntries', blobOf(good), { limits: { maxEntries: 10 } }],
    ['maxTocBytes (compressed)', blobOf(good), { limits: { maxTocBytes: 1000 } }],
    ['maxTocBytes (tar header)', blobOf(good), { limits: { maxTocBytes: member.length + 1000 } }],
    ['maxIndexBytes', blobOf(good), { maxIndexBytes: 1000 }],
    ['budget refused', blobOf(good), { budget: new MetadataBudget(1000) }],
    ['budget for the build but not the index', blobOf(good), { budget: new MetadataBudget(Math.ceil(good.length * 1.5) + 10) }],
    ['beforeParse throws', blobOf(good), { beforeParse: () => { throw new Error('no thanks') } }],
    ['wrong tar name', blobOf(good, gzipSync(Buffer.concat([tarHeader('other.json', good.length), good]))), {}],
    ['short tar entry', blobOf(good, gzipSync(Buffer.concat([tarHeader('stargz.index.json', good.length + 100), good]))), {}],
    ['less than a tar header', blobOf(good, gzipSync(Buffer.alloc(100))), {}],
    ['damaged deflate', blobOf(good, Buffer.concat([member.subarray(0, 40), Buffer.alloc(64, 0xff), member.subarray(104)])), {}],
    ['not gzip', blobOf(good, Buffer.alloc(200, 7)), {}],
  ]
  for (const [name, blob, opts] of cases) {
    const inline = await outcome(blob, opts)
    const worker = await outcome(blob, { ...opts, builder: pool })
    t.same(worker, inline, name)
    if (name.startsWith('good') || name === 'tiny') t.ok(inline.ok, `${name} builds${inline.ok ? '' : ': ' + String(inline.err.message)}`)
    else t.notOk(inline.ok, `${name} is refused: ${inline.ok ? '' : String(inline.err.message)}`)
  }
  t.ok(pool.stats.builds > 0, `${pool.stats.builds} builds ran in the pool`)
})

t.test('worker path: the budget is reserved on the main thread and released as inline', async (t) => {
  const pool = new TocBuildPool({ workers: 2 })
  t.teardown(() => pool.close())
  const json = serializeToc(manyEntries(500))
  const budget = new MetadataBudget(1 << 30)
  let seen = 0
  const r = await loadCompactToc(source(blobOf(json)), { budget, builder: pool, beforeParse: (n) => { seen = n } })
  t.equal(seen, json.length, 'beforeParse saw the JSON size, on this thread')
  t.equal(budget.usedBytes, r.index.byteLength(), 'the build reservation is released; the index holds its exact size')
  r.index.close()
  t.equal(budget.usedBytes, 0)
  // Two layers at once: both workers build.
  const both = await Promise.all([1, 2].map(() => loadCompactToc(source(blobOf(json)), { budget, builder: pool })))
  t.same(both[0]?.index.bytes(), both[1]?.index.bytes())
  for (const b of both) b.index.close()
  t.equal(budget.usedBytes, 0)
})

t.test('pool: close() ends every thread, is safe twice, and refuses later builds', async (t) => {
  const pool = new TocBuildPool({ workers: 2 })
  pool.warm()
  t.equal(pool.threads(), 2, 'warm starts both workers')
  const json = serializeToc(manyEntries(50))
  await loadCompactToc(source(blobOf(json)), { builder: pool })
  await pool.close()
  t.equal(pool.threads(), 0, 'no thread left')
  await pool.close()
  await t.rejects(loadCompactToc(source(blobOf(json)), { builder: pool }), { code: 'ERR_UNAVAILABLE' })
  t.notOk(process.getActiveResourcesInfo().includes('Worker'), 'no Worker handle left in the process')
})
