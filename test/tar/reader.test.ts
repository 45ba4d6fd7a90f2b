import t from 'tap'
import fc from 'fast-check'
import { mkdir, readFile, symlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { readTar, type TarEntry } from '../../src/tar/reader.js'
import { decompressLayer } from '../../src/tar/decompress.js'
import { BLOCK_SIZE, emptyHeader, writeChecksum, type TarHeader } from '../../src/tar/header.js'
import { encodeHeader, endOfArchive, paddingFor } from '../../src/tar/writer.js'
import { formatPaxRecords } from '../../src/tar/pax.js'
import { chunksOf, memTar } from '../../harness/memtar.js'
import { sh, tempDir } from '../../harness/tree.js'

interface Read { header: TarHeader; data: Buffer; offset: number }

async function readAll(buf: Buffer, piece = 1000): Promise<Read[]> {
  const out: Read[] = []
  for await (const e of readTar(chunksOf(buf, piece))) {
    const parts: Buffer[] = []
    for await (const p of e.body) parts.push(Buffer.from(p))
    out.push({ header: e.header, data: Buffer.concat(parts), offset: e.offset })
  }
  return out
}

function rawBlock(name: string, flag: string, size: number, fill?: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE)
  b.write(name, 0, 'latin1')
  b.write('0000644\0', 100, 'latin1')
  b.write('0000000\0', 108, 'latin1')
  b.write('0000000\0', 116, 'latin1')
  b.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1')
  b.write('00000000000\0', 136, 'latin1')
  b.write(flag, 156, 'latin1')
  b.write('ustar  \0', 257, 'latin1')
  fill?.(b)
  writeChecksum(b)
  return b
}
const pad = (data: Buffer): Buffer => Buffer.concat([data, Buffer.alloc(paddingFor(data.length))])

t.test('archives written by GNU tar in every format', async (tt) => {
  const dir = await tempDir(tt)
  const src = join(dir, 'src')
  const deep = Array.from({ length: 5 }, (_, i) => `dir${i}-${'d'.repeat(50)}`).join('/')
  await mkdir(join(src, deep), { recursive: true })
  await writeFile(join(src, deep, 'f'.repeat(90)), 'deep')
  await writeFile(join(src, 'ünï.txt'), 'unicode')
  await symlink(`${deep}/${'f'.repeat(90)}`, join(src, 'long-link'))
  await utimes(join(src, 'ünï.txt'), 1_234_567_890.25, 1_234_567_890.25)
  const longPath = `./${deep}/${'f'.repeat(90)}`
  for (const format of ['gnu', 'pax', 'posix', 'oldgnu'] as const) {
    const f = join(dir, `${format}.tar`)
    await sh('tar', ['--sort=name', `--format=${format}`, '-C', src, '-cf', f, '.'])
    const entries = await readAll(await readFile(f))
    const byName = new Map(entries.map((e) => [e.header.name, e]))
    tt.equal(byName.get(longPath)?.data.toString(), 'deep', `${format}: long name (${longPath.length} bytes)`)
    tt.equal(byName.get('./long-link')?.header.linkname, longPath.slice(2), `${format}: long link name`)
    tt.equal(byName.get('./ünï.txt')?.data.toString(), 'unicode', `${format}: unicode name`)
    if (format === 'pax' || format === 'posix') tt.equal(byName.get('./ünï.txt')?.header.mtimeNsec, 250_000_000, `${format}: fractional mtime`)
    tt.equal(byName.get(`./${deep}/`)?.header.typeflag, '5', `${format}: dir`)
  }
})

t.test('ustar prefix field', async (tt) => {
  const name = `${'p'.repeat(120)}/${'n'.repeat(80)}`
  const buf = memTar([{ name, content: 'x' }])
  tt.equal(buf.length, 512 + 512 + 1024, 'no PAX header needed')
  tt.equal((await readAll(buf))[0]?.header.name, name)
})

t.test('GNU long name / long link records', async (tt) => {
  const longName = 'n/'.repeat(100) + 'file'
  const longLink = 'l/'.repeat(120) + 'target'
  const buf = Buffer.concat([
    rawBlock('././@LongLink', 'L', longName.length + 1), pad(Buffer.from(longName + '\0')),
    rawBlock('././@LongLink', 'K', longLink.length + 1), pad(Buffer.from(longLink + '\0')),
    rawBlock('truncated-name', '2', 0),
    rawBlock('next', '0', 3), pad(Buffer.from('abc')),
    endOfArchive(),
  ])
  const entries = await readAll(buf)
  tt.same(entries.map((e) => [e.header.name, e.header.typeflag, e.header.linkname]), [[longName, '2', longLink], ['next', '0', '']])
  tt.equal(entries[0]?.offset, 0, 'entry offset is its first metadata block')
  tt.equal(entries[1]?.data.toString(), 'abc', 'long names do not leak into the next entry')
})

t.test('PAX local and global headers', async (tt) => {
  const xattrVal = Buffer.from([0, 1, 0xfe, 0xff])
  const g = formatPaxRecords(new Map<string, Buffer | string>([['uid', '4242'], ['uname', 'globaluser']]))
  const x = formatPaxRecords(new Map<string, Buffer | string>([
    ['path', 'a/very/long/ünïcödé/name'], ['size', '5'], ['mtime', '1700000000.123456789'], ['gid', '99999999'],
    ['SCHILY.xattr.user.bin', xattrVal], ['SCHILY.acl.access', 'user::rw-'], ['atime', '1.5'],
  ]))
  const buf = Buffer.concat([
    rawBlock('pax_global_header', 'g', g.length), pad(g),
    rawBlock('PaxHeaders/x', 'x', x.length), pad(x),
    rawBlock('short', '0', 0), pad(Buffer.from('hello')),
    rawBlock('second', '0', 2), pad(Buffer.from('hi')),
    endOfArchive(),
  ])
  const [a, b] = await readAll(buf)
  tt.equal(a?.header.name, 'a/very/long/ünïcödé/name')
  tt.equal(a?.data.toString(), 'hello', 'PAX size overrides the header size')
  tt.same([a?.header.mtime, a?.header.mtimeNsec], [1_700_000_000, 123_456_789])
  tt.same([a?.header.uid, a?.header.gid, a?.header.uname], [4242, 99_999_999, 'globaluser'])
  tt.same(a?.header.xattrs.get('user.bin'), xattrVal)
  tt.same([...(a?.header.extraPax.keys() ?? [])], ['SCHILY.acl.access'], 'unknown records carried, atime dropped')
  tt.same([b?.header.name, b?.header.uid, b?.header.gid, b?.header.mtimeNsec], ['second', 4242, 0, 0], 'global applies to later entries, local does not')
})

t.test('base-256 numbers and legacy type flags', async (tt) => {
  const blk = rawBlock('bigsize', '\0', 0, (b) => {
    b.fill(0, 108, 116)
    b[108] = 0x80
    b.writeUIntBE(5_000_000, 113, 3) // uid in base-256
    b.fill(0xff, 136, 148) // mtime -1
  })
  const dirBlk = rawBlock('olddir/', '\0', 0)
  const contBlk = rawBlock('contiguous', '7', 1)
  const buf = Buffer.concat([blk, dirBlk, contBlk, pad(Buffer.from('c')), endOfArchive()])
  const [a, d, c] = await readAll(buf)
  tt.same([a?.header.uid, a?.header.mtime, a?.header.typeflag], [5_000_000, -1, '0'])
  tt.equal(d?.header.typeflag, '5', "NUL type with a trailing slash is a directory")
  tt.same([c?.header.typeflag, c?.data.toString()], ['0', 'c'], "'7' is a regular file")
})

t.test('header-only types carry no payload whatever their size field says', async (tt) => {
  const buf = Buffer.concat([rawBlock('d/', '5', 100), rawBlock('f', '0', 1), pad(Buffer.from('z')), endOfArchive()])
  const [d, f] = await readAll(buf)
  tt.same([d?.header.size, d?.data.length, f?.data.toString()], [0, 0, 'z'])
})

t.test('bad checksum names the offset', async (tt) => {
  const buf = memTar([{ name: 'a', content: 'x' }, { name: 'b', content: 'y' }])
  buf[1024 + 5] ^= 0x40 // Corrupt the second header (at 1024).
  await tt.rejects(readAll(buf), { name: 'TarError', message: /tar header at offset 1024: bad checksum/ })
})

t.test('truncated input is a TarError wherever it stops', async (tt) => {
  const full = memTar([{ name: 'x'.repeat(150) + '/' + 'y'.repeat(120), content: 'payload'.repeat(100), xattrs: { 'user.a': 'b' } }, { name: 'z', content: 'zz' }], { endBlocks: false })
  // Every cut that is not on an entry boundary must fail.
  const boundaries = new Set([0, full.length - 1024, full.length])
  for (let cut = 1; cut < full.length; cut += 37) {
    if (boundaries.has(cut)) continue
    await tt.rejects(readAll(full.subarray(0, cut)), { name: 'TarError', message: /truncated tar|input ended/ }, `cut at ${cut}`)
  }
  await tt.rejects(readAll(Buffer.alloc(0)), { name: 'TarError', message: /empty/ })
})

t.test('end of archive', async (tt) => {
  const one = memTar([{ name: 'a', content: 'x' }], { endBlocks: false })
  tt.equal((await readAll(one)).length, 1, 'no end blocks: accepted like GNU tar and Go')
  tt.equal((await readAll(Buffer.concat([one, Buffer.alloc(512)]))).length, 1, 'one zero block')
  tt.equal((await readAll(Buffer.concat([one, Buffer.alloc(10240)]))).length, 1, 'record padding ignored')
  await tt.rejects(readAll(Buffer.concat([one, Buffer.alloc(512), memTar([{ name: 'b' }])])), { name: 'TarError', message: /non-zero block after a zero block/ })
})

t.test('unread bodies are skipped', async (tt) => {
  const buf = memTar([{ name: 'a', content: 'A'.repeat(3000) }, { name: 'b', content: 'B' }])
  const seen: TarEntry[] = []
  for await (const e of readTar(chunksOf(buf, 100))) seen.push(e)
  tt.same(seen.map((e) => [e.header.name, e.dataOffset]), [['a', 512], ['b', 512 + 3072 + 512]])
})

t.test('gzip and zstd detection', async (tt) => {
  const buf = memTar([{ name: 'a', content: 'gz' }])
  const entries: string[] = []
  for await (const e of readTar(decompressLayer(chunksOf(gzipSync(buf), 7)))) entries.push(e.header.name)
  tt.same(entries, ['a'])
  const zstd = (async function* () { yield Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]) })()
  await tt.rejects(readAll2(decompressLayer(zstd)), { code: 'ERR_INVALID_ARGUMENT', message: /zstd input not supported on Node 20/ })
})

async function readAll2(src: AsyncIterable<Buffer>): Promise<number> {
  let n = 0
  for await (const _ of readTar(src)) n++
  return n
}

t.test('writer → reader round trip (property)', async (tt) => {
  const nameArb = fc.array(fc.stringMatching(/^[a-zA-Z0-9._ é日-]{1,40}$/), { minLength: 1, maxLength: 9 }).map((p) => p.join('/'))
  const headerArb = fc.record({
    name: nameArb,
    typeflag: fc.constantFrom('0', '1', '2', '3', '4', '5', '6' as const),
    mode: fc.integer({ min: 0, max: 0o7777 }),
    uid: fc.oneof(fc.integer({ min: 0, max: 70000 }), fc.integer({ min: 0, max: 2 ** 40 })),
    gid: fc.integer({ min: 0, max: 2 ** 33 }),
    mtime: fc.integer({ min: -(2 ** 34), max: 2 ** 34 }),
    mtimeNsec: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 999_999_999 })),
    linkname: fc.oneof(fc.constant(''), nameArb),
    uname: fc.stringMatching(/^[a-z]{0,40}$/),
    gname: fc.stringMatching(/^[a-zé]{0,20}$/),
    devmajor: fc.integer({ min: 0, max: 4095 }),
    devminor: fc.integer({ min: 0, max: 2 ** 20 }),
    size: fc.integer({ min: 0, max: 2000 }),
    xattrs: fc.dictionary(fc.stringMatching(/^user\.[a-z]{1,10}$/), fc.uint8Array({ maxLength: 50 })),
  })
  await fc.assert(fc.asyncProperty(fc.array(headerArb, { minLength: 1, maxLength: 5 }), async (hs) => {
    const parts: Buffer[] = []
    const expected: TarHeader[] = []
    for (const r of hs) {
      const h = { ...emptyHeader(r.name, r.typeflag), ...r, xattrs: new Map(Object.entries(r.xattrs).map(([k, v]) => [k, Buffer.from(v)])), extraPax: new Map<string, Buffer>() }
      if (r.typeflag !== '0') h.size = 0
      parts.push(encodeHeader(h), Buffer.alloc(h.size, 0x61), Buffer.alloc(paddingFor(h.size)))
      expected.push(h)
    }
    parts.push(endOfArchive())
    const got = await readAll(Buffer.concat(parts), 333)
    tt.same(got.map((g) => g.header), expected)
    return got.length === expected.length
  }), { numRuns: 200 })
})
