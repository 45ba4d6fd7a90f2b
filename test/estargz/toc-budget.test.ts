/**
 * Issue #10 §2 and §3: a TOC that gives one chunk digest two sizes is refused; a daemon-wide
 * metadata budget refuses a TOC that does not fit, with a message that says why, and gets its
 * share back when the reader is closed.
 */
import t from 'tap'
import { EstargzReader } from '../../src/estargz/reader.js'
import { MetadataBudget, estimateTocCost } from '../../src/estargz/metadata-budget.js'
import { ChunkReader } from '../../src/reader/chunk-reader.js'
import { BufferSource, buildMiniEstargz } from '../../harness/mini-estargz.js'
import { prng } from '../reader/fixtures.js'

t.test('one digest, two sizes: refused when the index is built', async (t) => {
  const a = prng(32 * 1024, 1)
  const m = buildMiniEstargz([{ name: 'a', data: a }, { name: 'b', data: prng(64 * 1024, 2) }], {
    mutateToc: (toc) => { toc.entries[1]!.chunkDigest = toc.entries[0]!.chunkDigest },
  })
  const err = await EstargzReader.open(new BufferSource(m.blob)).then(() => undefined, (e: unknown) => e as Error & { rule?: string })
  t.equal(err?.rule, 'digest-two-sizes')
  t.match(err?.message, /size 65536 .* size 32768/)
  // Two files with the same content (same digest, same size) are fine.
  const same = buildMiniEstargz([{ name: 'a', data: a }, { name: 'b', data: a }])
  t.ok(await EstargzReader.open(new BufferSource(same.blob)))
})

t.test('metadata budget: refusal names the budget; released on close', async (t) => {
  const files = Array.from({ length: 200 }, (_, i) => ({ name: `f${i}`, data: Buffer.from(`file ${i}`) }))
  const m = buildMiniEstargz(files)
  const cost = estimateTocCost(m.tocJson.length)
  const budget = new MetadataBudget(cost * 2 + 10)
  const r1 = await EstargzReader.open(new BufferSource(m.blob), { budget })
  const r2 = await EstargzReader.open(new BufferSource(m.blob), { budget })
  t.equal(budget.usedBytes, cost * 2)
  const err = await EstargzReader.open(new BufferSource(m.blob), { budget }).then(() => undefined, (e: unknown) => e as Error & { code?: string })
  t.equal(err?.code, 'ERR_LIMIT_EXCEEDED')
  t.match(err?.message, /metadata budget of \d+ bytes/)
  t.match(err?.message, /metadata_budget_mb/)
  t.equal(budget.reservations, 2, 'the refused TOC holds nothing')
  const cr = new ChunkReader({ reader: r1 })
  await cr.close()
  await cr.close()
  t.equal(budget.usedBytes, cost, 'closing the reader gives its share back, once')
  r2.release()
  t.equal(budget.usedBytes, 0)
  // A TOC that fails validation after the reservation holds nothing either.
  const bad = buildMiniEstargz(files, { mutateToc: (toc) => { toc.entries[0]!.name = 'a/../../x' } })
  await t.rejects(EstargzReader.open(new BufferSource(bad.blob), { budget }), { code: 'ERR_TOC_INVALID' })
  t.equal(budget.usedBytes, 0)
})
