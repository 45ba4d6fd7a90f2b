import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { parseFooter } from '../../src/estargz/footer.js'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { validateToc } from '../../src/estargz/toc-validate.js'
import { StargzError } from '../../src/errors.js'
import { BufferSource, buildMiniEstargz, footer } from '../../harness/mini-estargz.js'

// Parsers face untrusted bytes: every input must give a typed error or a valid result, never a
// crash, a foreign exception type or a hang (tap's per-file timeout catches hangs).

const base = buildMiniEstargz([
  { name: 'a', type: 'dir' },
  { name: 'a/b.txt', data: Buffer.from('bee') },
  { name: 'a/big', data: randomBytes(50_000), chunkSize: 8192 },
  { name: 'a/s', type: 'symlink', linkName: 'b.txt' },
])

function typedOrOk(fn: () => unknown): boolean {
  try { fn(); return true } catch (e) { return e instanceof StargzError }
}

t.test('random footers', async (t) => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 80 }), fc.option(fc.nat()), (bytes, size) => {
    return typedOrOk(() => parseFooter(Buffer.from(bytes), size ?? undefined))
  }), { numRuns: 3000 })
  t.pass('no untyped errors on random footers')
})

t.test('mutated valid footers', async (t) => {
  fc.assert(fc.property(fc.nat({ max: 2 ** 40 }), fc.boolean(), fc.nat({ max: 50 }), fc.integer({ min: 0, max: 255 }), (off, legacy, pos, val) => {
    const f = footer(off, legacy)
    f[pos % f.length] = val
    return typedOrOk(() => {
      const r = parseFooter(f)
      if (!Number.isSafeInteger(r.tocOffset) || r.tocOffset < 0) throw new Error('bad offset accepted')
    })
  }), { numRuns: 3000 })
  t.pass('no untyped errors on mutated footers')
})

const jsonValue = fc.jsonValue({ maxDepth: 3 })
const entryArb = fc.record({
  name: fc.oneof(fc.string(), fc.constantFrom('a', 'a/b', '../x', '/abs', './c/', 'a//b/./c')),
  type: fc.oneof(fc.constantFrom('dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'chunk'), fc.string()),
  size: fc.oneof(fc.nat(), jsonValue),
  offset: fc.oneof(fc.nat({ max: 1000 }), jsonValue),
  chunkOffset: fc.oneof(fc.nat({ max: 1000 }), jsonValue),
  chunkSize: fc.oneof(fc.nat({ max: 1000 }), jsonValue),
  linkName: fc.oneof(fc.string(), jsonValue),
  chunkDigest: fc.oneof(fc.constant('sha256:' + '1'.repeat(64)), fc.string()),
  xattrs: fc.oneof(fc.dictionary(fc.string(), fc.base64String()), jsonValue),
  mode: fc.oneof(fc.nat(), jsonValue),
}, { requiredKeys: [] })

t.test('random TOC JSON', async (t) => {
  fc.assert(fc.property(fc.oneof(jsonValue, fc.record({ version: fc.constantFrom(1, 2, '1'), entries: fc.array(entryArb, { maxLength: 20 }) })), (json) => {
    return typedOrOk(() => validateToc(json, { tocOffset: 2000, footerKind: 'estargz' }))
  }), { numRuns: 3000 })
  t.pass('no untyped errors on random TOCs')
})

t.test('mutated blobs: typed error or correct bytes', async (t) => {
  const expected = new Map<string, Buffer>()
  const clean = await BlobReader.open(new BufferSource(base.blob))
  for (const name of ['a/b.txt', 'a/big']) expected.set(name, await clean.readFile(name))
  await fc.assert(fc.asyncProperty(
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
    fc.boolean(),
    async (flips, nearEnd) => {
      const b = Buffer.from(base.blob)
      for (const [pos, val] of flips) {
        // Half the runs aim at the TOC and footer, where parsing happens.
        const span = nearEnd ? b.length - base.tocOffset : b.length
        const at = (nearEnd ? base.tocOffset : 0) + (pos % span)
        b[at] = val
      }
      try {
        const r = await BlobReader.open(new BufferSource(b))
        for (const [name, want] of expected) {
          try {
            const got = await r.readFile(name)
            // A read that succeeds must return the original bytes, unless the TOC itself changed
            // (then the digests changed with it and the file is a different, self-consistent one).
            if (r.tocDigest === base.tocDigest && !got.equals(want)) return false
          } catch (e) {
            if (!(e instanceof StargzError)) return false
          }
        }
        return true
      } catch (e) {
        return e instanceof StargzError
      }
    },
  ), { numRuns: 1500 })
  t.pass('mutations never produced untyped errors or wrong bytes')
})
