import t from 'tap'
import { randomBytes } from 'node:crypto'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { parseFooter } from '../../src/estargz/footer.js'
import { StargzError } from '../../src/errors.js'
import { BufferSource, buildMiniEstargz, footer } from '../../harness/mini-estargz.js'

const big = randomBytes(300_000)
const small = Buffer.from('hello, lazy world\n')

function sample(legacy = false) {
  return buildMiniEstargz([
    { name: 'etc', type: 'dir' },
    { name: 'etc/hello.txt', data: small },
    { name: 'etc/empty', data: Buffer.alloc(0) },
    { name: 'usr/lib/big.bin', data: big, chunkSize: 64 * 1024 },
    { name: 'etc/link', type: 'symlink', linkName: 'hello.txt' },
    { name: 'etc/hard', type: 'hardlink', linkName: 'etc/hello.txt' },
  ], { legacy })
}

t.test('footer round trip, both kinds', async (t) => {
  t.same(parseFooter(footer(1234)), { kind: 'estargz', size: 51, tocOffset: 1234 })
  t.same(parseFooter(footer(0xabcdef, true)), { kind: 'legacy', size: 47, tocOffset: 0xabcdef })
  t.equal(footer(1).length, 51)
  t.equal(footer(1, true).length, 47)
  t.throws(() => parseFooter(Buffer.alloc(51)), { code: 'ERR_FOOTER_INVALID' })
  t.throws(() => parseFooter(footer(100), 120), { code: 'ERR_FOOTER_INVALID' }, 'TOC offset beyond blob')
  const bad = footer(5)
  bad.write('STARGX', 32, 'latin1')
  t.throws(() => parseFooter(bad), /STARGZ magic/)
})

for (const legacy of [false, true]) {
  t.test(`reads files byte-exact (${legacy ? 'legacy' : 'estargz'} footer)`, async (t) => {
    const m = sample(legacy)
    const src = new BufferSource(m.blob)
    const r = await BlobReader.open(src, { tocDigest: m.tocDigest })
    t.equal(r.footer.kind, legacy ? 'legacy' : 'estargz')
    t.equal(r.tocDigest, m.tocDigest)
    t.same(await r.readFile('etc/hello.txt'), small)
    t.same(await r.readFile('/etc/hello.txt', 7, 4), Buffer.from('lazy'))
    t.same(await r.readFile('etc/hard'), small, 'hardlink reads its target')
    t.same(await r.readFile('etc/empty'), Buffer.alloc(0))
    t.same(await r.readFile('usr/lib/big.bin'), big)
    // Ranges that straddle chunk boundaries.
    for (const [off, len] of [[0, 1], [65535, 2], [65536 * 2 - 10, 70000], [299_990, 100], [123_456, 1]] as const) {
      t.same(await r.readFile('usr/lib/big.bin', off, len), big.subarray(off, Math.min(big.length, off + len)), `range ${off}+${len}`)
    }
    t.equal(r.index.chunks('usr/lib/big.bin').length, 5)
    t.equal(r.lookup('usr/lib')?.type, 'dir', 'implied parent directory exists')
    t.ok(r.index.children.get('')?.includes('usr'))
    const v = await r.verifyAll()
    t.equal(v.chunks, 1 + 5)
    t.equal(v.bytes, small.length + big.length)
    await t.rejects(r.readFile('nope'), { code: 'ERR_NOT_FOUND' })
    await t.rejects(r.readFile('etc'), { code: 'ERR_INVALID_ARGUMENT' })
  })
}

t.test('a small read fetches only its member, not the blob', async (t) => {
  const m = sample()
  const src = new BufferSource(m.blob)
  const r = await BlobReader.open(src)
  const before = src.bytesRead
  await r.readFile('usr/lib/big.bin', 200_000, 10)
  const member = r.index.chunksInRange('usr/lib/big.bin', 200_000, 10)[0]!
  t.equal(src.bytesRead - before, member.compressedEnd - member.compressedOffset)
  t.ok(src.bytesRead - before < m.blob.length / 4)
})

t.test('wrong TOC digest is refused', async (t) => {
  const m = sample()
  await t.rejects(BlobReader.open(new BufferSource(m.blob), { tocDigest: 'sha256:' + '0'.repeat(64) }), { code: 'ERR_TOC_DIGEST_MISMATCH' })
})

t.test('a corrupted chunk gives an error, never wrong bytes', async (t) => {
  const m = sample()
  const probe = await BlobReader.open(new BufferSource(m.blob))
  const ref = probe.index.chunks('usr/lib/big.bin')[2]!
  // Flip a byte inside the compressed member: either inflate fails or the digest does.
  const tampered = Buffer.from(m.blob)
  const at = ref.compressedOffset + Math.floor((ref.compressedEnd - ref.compressedOffset) / 2)
  tampered[at] = (tampered[at] ?? 0) ^ 0xff
  const r = await BlobReader.open(new BufferSource(tampered))
  await t.rejects(r.readFile('usr/lib/big.bin', ref.chunkOffset, 10), { code: /^ERR_(FETCH|CHUNK_DIGEST_MISMATCH)$/ })
  t.same(await r.readFile('usr/lib/big.bin', 0, 100), big.subarray(0, 100), 'other chunks still read')
  await t.rejects(r.verifyAll(), { code: /^ERR_(FETCH|CHUNK_DIGEST_MISMATCH)$/ })

  // Same compressed stream, different content: a TOC whose chunkDigest lies.
  const lying = buildMiniEstargz([{ name: 'f', data: small }], {
    mutateToc: (toc) => { (toc.entries[0] as Record<string, unknown>).chunkDigest = 'sha256:' + 'a'.repeat(64) },
  })
  const r2 = await BlobReader.open(new BufferSource(lying.blob))
  await t.rejects(r2.readFile('f'), { code: 'ERR_CHUNK_DIGEST_MISMATCH' })
})

t.test('TOC validation names the entry and the rule', async (t) => {
  const cases: Array<[string, (toc: { entries: Array<Record<string, unknown>> }) => void, RegExp]> = [
    ['dotdot escape', (toc) => { toc.entries[1]!.name = 'etc/../../x' }, /name-escape/],
    ['absolute dotdot escape', (toc) => { toc.entries[1]!.name = '/../etc/hello.txt' }, /name-escape/],
    ['nul', (toc) => { toc.entries[1]!.name = 'a\0b' }, /name-nul/],
    ['bad type', (toc) => { toc.entries[1]!.type = 'sock' }, /rule: type|unknown type/],
    ['offset order', (toc) => { toc.entries[3]!.offset = 1 }, /offset-order|offset-range/],
    ['offset past toc', (toc) => { toc.entries[1]!.offset = 1e9 }, /offset-range/],
    ['chunk gap', (toc) => { toc.entries[4]!.chunkOffset = 70000 }, /chunk-contiguous/],
    ['chunk orphan', (toc) => { toc.entries.splice(2, 0, { name: 'zzz', type: 'chunk', offset: 5, chunkOffset: 0 }) }, /chunk-orphan/],
    ['chunk missing', (toc) => { toc.entries.splice(3, 1) }, /chunk-contiguous/],
    ['chunk short', (toc) => { toc.entries[2]!.size = 999_999 }, /chunk-coverage/],
    ['missing chunk digest', (toc) => { delete toc.entries[1]!.chunkDigest }, /chunk-digest-required/],
    ['bad digest', (toc) => { toc.entries[1]!.digest = 'md5:xyz' }, /digest-format/],
    ['hardlink target', (toc) => { toc.entries.push({ name: 'h', type: 'hardlink', linkName: 'missing' }) }, /hardlink-target/],
    ['symlink target', (toc) => { toc.entries.push({ name: 's', type: 'symlink' }) }, /symlink-target/],
    ['duplicate', (toc) => { toc.entries.push({ name: 'etc/', type: 'dir' }) }, /duplicate-name/],
    ['negative uid', (toc) => { toc.entries[1]!.uid = -1 }, /field-type/],
    ['xattr not base64', (toc) => { toc.entries[1]!.xattrs = { 'user.a': '!!' } }, /xattrs/],
  ]
  for (const [label, mutate, re] of cases) {
    const m = buildMiniEstargz([
      { name: 'etc', type: 'dir' },
      { name: 'etc/hello.txt', data: small },
      { name: 'big', data: big, chunkSize: 100_000 },
    ], { mutateToc: mutate as never })
    const err = await BlobReader.open(new BufferSource(m.blob)).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof StargzError, `${label}: typed error`)
    t.match((err as Error | undefined)?.message ?? '', re, `${label}: ${(err as Error | undefined)?.message}`)
  }
})

t.test('limits bound what a TOC may claim', async (t) => {
  const m = sample()
  await t.rejects(BlobReader.open(new BufferSource(m.blob), { limits: { maxEntries: 2 } }), { code: 'ERR_LIMIT_EXCEEDED' })
  await t.rejects(BlobReader.open(new BufferSource(m.blob), { limits: { maxTocBytes: 100 } }), { code: 'ERR_LIMIT_EXCEEDED' })
})

t.test('legacy multi-chunk files are verified against the whole-file digest', async (t) => {
  const noChunkDigests = (toc: { entries: Array<Record<string, unknown>> }): void => { for (const e of toc.entries) delete e.chunkDigest }
  const m = buildMiniEstargz([{ name: 'big', data: big, chunkSize: 100_000 }], { legacy: true, mutateToc: noChunkDigests })
  const src = new BufferSource(m.blob)
  const r = await BlobReader.open(src)
  t.same(await r.readFile('big', 150_000, 10), big.subarray(150_000, 150_010), 'partial read served after whole-file check')
  t.match(await r.verifyAll(), { files: 1, chunks: 3, unverified: 0 })

  const lying = buildMiniEstargz([{ name: 'big', data: big, chunkSize: 100_000 }], {
    legacy: true,
    mutateToc: (toc) => { noChunkDigests(toc); toc.entries[0]!.digest = 'sha256:' + 'b'.repeat(64) },
  })
  const r1 = await BlobReader.open(new BufferSource(lying.blob))
  await t.rejects(r1.readFile('big', 0, 10), { code: 'ERR_CHUNK_DIGEST_MISMATCH' })

  const bare = buildMiniEstargz([{ name: 'big', data: big, chunkSize: 100_000 }], {
    legacy: true,
    mutateToc: (toc) => { noChunkDigests(toc); delete toc.entries[0]!.digest },
  })
  const r2 = await BlobReader.open(new BufferSource(bare.blob))
  await t.rejects(r2.readFile('big', 0, 10), { code: 'ERR_FAILED_PRECONDITION' })
  t.match(await r2.verifyAll(), { unverified: 3 })
  const r3 = await BlobReader.open(new BufferSource(bare.blob), { allowUnverified: true })
  t.same(await r3.readFile('big'), big)
})
