/** Structure of the blobs convertLayer writes: members, chunks, digests, TOC, footer, order. */
import t from 'tap'
import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { convertLayer } from '../../src/estargz/writer.js'
import { writeFooter } from '../../src/estargz/footer-writer.js'
import type { TocEntry } from '../../src/estargz/types.js'
import { TarError } from '../../src/errors.js'
import { gzipMembers, tocOf } from '../../harness/convert.js'
import { chunksOf, Collector, convertBuffer, memTar, type MemEntry } from '../../harness/memtar.js'
import { patternBytes } from '../../harness/tree.js'

const sha = (b: Buffer | string): string => 'sha256:' + createHash('sha256').update(b).digest('hex')
const CHUNK = 64 * 1024

const files: Record<string, Buffer> = {
  'a/small.txt': Buffer.from('hello\n'),
  'a/exact': patternBytes(CHUNK, 1),
  'a/b/twoandhalf': patternBytes(CHUNK * 2 + CHUNK / 2, 2),
  'big': patternBytes(CHUNK * 5 + 3, 3),
}
const layer: MemEntry[] = [
  { name: 'a/', type: '5', mode: 0o755, mtime: 1_600_000_000, uname: 'root', gname: 'root' },
  { name: 'a/small.txt', content: files['a/small.txt'], mode: 0o644, mtime: 1_600_000_001, uid: 1000, gid: 1000, uname: 'user', gname: 'grp' },
  { name: 'a/empty', content: '', mode: 0o600, mtime: 1_600_000_002, uid: 1000, gid: 1000, uname: 'user', gname: 'grp' },
  { name: 'a/exact', content: files['a/exact'], mode: 0o644 },
  { name: 'a/b/', type: '5', mode: 0o700 },
  { name: 'a/b/twoandhalf', content: files['a/b/twoandhalf'], mode: 0o755, mtime: 1_600_000_003, mtimeNsec: 600_000_000 },
  { name: 'a/link', type: '2', linkname: 'small.txt', mode: 0o777 },
  { name: 'a/hard', type: '1', linkname: 'a/small.txt', mode: 0o644 },
  { name: 'dev/', type: '5', mode: 0o755 },
  { name: 'dev/null', type: '3', devmajor: 1, devminor: 3, mode: 0o666 },
  { name: 'dev/sda', type: '4', devmajor: 8, devminor: 0, mode: 0o660 },
  { name: 'dev/fifo', type: '6', mode: 0o644 },
  { name: 'x/', type: '5', xattrs: { 'user.k': 'v<&>' } },
  { name: 'big', content: files['big'], mode: 0o644, mtime: 1_600_000_004 },
]

t.test('members, chunks and digests are where the TOC says', async (tt) => {
  const input = memTar(layer)
  const { blob, result } = await convertBuffer(input, { chunkSize: CHUNK })
  tt.equal(result.size, blob.length, 'size')
  tt.equal(result.digest, sha(blob), 'digest is sha256 of the blob')
  const members = gzipMembers(blob)
  const footer = members[members.length - 1]!
  tt.equal(footer.length, 51, 'last member is the footer')
  const { toc, json, tocOffset } = tocOf(blob)
  tt.same(blob.subarray(blob.length - 51), writeFooter(tocOffset), 'footer bytes')
  tt.equal(members[members.length - 2]!.offset, tocOffset, 'TOC member starts at the footer offset')
  tt.equal(result.tocDigest, sha(json), 'tocDigest is sha256 of the TOC JSON')
  const uncompressed = Buffer.concat(members.map((m) => m.data))
  tt.equal(result.diffID, sha(uncompressed), 'diffID is sha256 of the uncompressed stream')
  tt.equal(result.uncompressedSize, uncompressed.length)
  tt.same(uncompressed.subarray(uncompressed.length - 1024), Buffer.alloc(1024), 'ends with two zero blocks')
  tt.equal(result.entries, toc.entries.length)

  const starts = new Set(members.map((m) => m.offset))
  const byOffset = new Map(members.map((m) => [m.offset, m]))
  const payloadOffsets = new Set<number>()
  let current: TocEntry | undefined
  for (const e of toc.entries) {
    if (e.type === 'reg') current = e
    if (!((e.type === 'reg' && (e.size ?? 0) > 0) || e.type === 'chunk')) {
      tt.equal(e.offset, undefined, `${e.name}: no offset`)
      continue
    }
    tt.ok(starts.has(e.offset!), `${e.name}@${e.chunkOffset ?? 0}: offset ${e.offset} is a member start`)
    payloadOffsets.add(e.offset!)
    const content = e.name === '.no.prefetch.landmark' ? Buffer.from([0x0f]) : files[e.name]!
    const len = e.chunkSize || content.length - (e.chunkOffset ?? 0)
    const bytes = byOffset.get(e.offset!)!.data.subarray(0, len)
    tt.equal(sha(bytes), e.chunkDigest, `${e.name}@${e.chunkOffset ?? 0}: chunkDigest`)
    tt.same(bytes, content.subarray(e.chunkOffset ?? 0, (e.chunkOffset ?? 0) + len), 'chunk bytes are the file bytes')
    if (e.type === 'reg') tt.equal(e.digest, sha(content), `${e.name}: digest of the whole file`)
    tt.equal(current?.name, e.name)
  }
  // The only members not starting a payload chunk: the first (headers), the TOC and the footer.
  const others = members.filter((m) => !payloadOffsets.has(m.offset)).map((m) => m.offset)
  tt.same(others, [0, tocOffset, blob.length - 51], 'no member boundary the TOC does not explain')
})

t.test('TOC entries follow the reference writer', async (tt) => {
  const { blob } = await convertBuffer(memTar(layer), { chunkSize: CHUNK })
  const { toc, json } = tocOf(blob)
  tt.equal(toc.version, 1)
  const get = (name: string, type = 'reg'): TocEntry => toc.entries.find((e) => e.name === name && e.type === type)!
  tt.same(toc.entries.map((e) => `${e.type}:${e.name}`), [
    'reg:.no.prefetch.landmark', 'dir:a/', 'reg:a/small.txt', 'reg:a/empty', 'reg:a/exact', 'dir:a/b/',
    'reg:a/b/twoandhalf', 'chunk:a/b/twoandhalf', 'chunk:a/b/twoandhalf', 'symlink:a/link', 'hardlink:a/hard',
    'dir:dev/', 'char:dev/null', 'block:dev/sda', 'fifo:dev/fifo', 'dir:x/',
    'reg:big', 'chunk:big', 'chunk:big', 'chunk:big', 'chunk:big', 'chunk:big',
  ], 'entry order; names as in the tar (dirs keep their trailing slash)')
  tt.same(get('.no.prefetch.landmark'), { name: '.no.prefetch.landmark', type: 'reg', size: 1, offset: get('.no.prefetch.landmark').offset, digest: sha(Buffer.from([0x0f])), chunkDigest: sha(Buffer.from([0x0f])) })
  tt.same(get('a/', 'dir'), { name: 'a/', type: 'dir', modtime: '2020-09-13T12:26:40Z', mode: 0o755, userName: 'root', groupName: 'root' })
  const small = get('a/small.txt')
  tt.equal(small.userName, 'user')
  tt.equal(get('a/empty').userName, undefined, 'userName only when it changes for the uid')
  tt.same(get('a/empty'), { name: 'a/empty', type: 'reg', modtime: '2020-09-13T12:26:42Z', mode: 0o600, uid: 1000, gid: 1000, digest: sha('') }, 'empty file: digest of nothing, no offset')
  tt.equal(get('a/exact').chunkSize, CHUNK, 'a file of exactly one chunk carries chunkSize')
  const tah = toc.entries.filter((e) => e.name === 'a/b/twoandhalf')
  tt.same(tah.map((e) => [e.chunkOffset, e.chunkSize]), [[undefined, CHUNK], [CHUNK, CHUNK], [2 * CHUNK, undefined]], 'chunkSize on all but a last partial chunk')
  tt.equal(tah[0]!.modtime, '2020-09-13T12:26:44Z', 'modtime rounded to the nearest second')
  tt.equal(get('a/small.txt').chunkSize, undefined, 'no chunkSize for a one-chunk file')
  tt.same(get('a/link', 'symlink').linkName, 'small.txt')
  tt.same(get('a/hard', 'hardlink').linkName, 'a/small.txt')
  tt.same([get('dev/null', 'char').devMajor, get('dev/null', 'char').devMinor], [1, 3])
  tt.same([get('dev/sda', 'block').devMajor, get('dev/sda', 'block').devMinor], [8, undefined])
  tt.same(get('x/', 'dir').xattrs, { 'user.k': Buffer.from('v<&>').toString('base64') })
  const text = json.toString()
  tt.match(text, /^\{\n\t"version": 1,\n\t"entries": \[\n\t\t\{\n\t\t\t"name": ".no.prefetch.landmark",\n\t\t\t"type": "reg",/, 'Go MarshalIndent layout')
  tt.notMatch(text, /\n$/, 'no trailing newline')
})

t.test('Go JSON escaping of <, > and & in names', async (tt) => {
  const { blob } = await convertBuffer(memTar([{ name: 'a<b>&c', content: 'x' }]))
  const { json, toc } = tocOf(blob)
  tt.match(json.toString(), /"name": "a\\u003cb\\u003e\\u0026c"/)
  tt.equal(toc.entries[1]!.name, 'a<b>&c')
})

t.test('prioritized files come first with their parents, then .prefetch.landmark', async (tt) => {
  const warnings: string[] = []
  const { blob, result } = await convertBuffer(memTar(layer), {
    chunkSize: CHUNK,
    prioritizedFiles: ['/big', './a/b/twoandhalf', 'a/hard', 'missing/file'],
    onWarning: (m) => warnings.push(m),
  })
  const { toc } = tocOf(blob)
  const names = toc.entries.filter((e) => e.type !== 'chunk').map((e) => e.name)
  tt.same(names.slice(0, 7), ['big', 'a/', 'a/b/', 'a/b/twoandhalf', 'a/small.txt', 'a/hard', '.prefetch.landmark'])
  tt.same(names.slice(7), ['a/empty', 'a/exact', 'a/link', 'dev/', 'dev/null', 'dev/sda', 'dev/fifo', 'x/'], 'the rest in input order')
  tt.same(result.missingPrioritizedFiles, ['missing/file'])
  tt.equal(warnings.length, 1)
  tt.match(warnings[0], /missing\/file/)
})

t.test('deterministic: same input and options give the same bytes, whatever the concurrency', async (tt) => {
  const input = memTar(layer)
  const a = await convertBuffer(input, { chunkSize: CHUNK, concurrency: 2 })
  const b = await convertBuffer(input, { chunkSize: CHUNK, concurrency: 1 })
  tt.equal(a.result.digest, b.result.digest)
  tt.ok(a.blob.equals(b.blob), 'identical blobs')
  const c = await convertBuffer(input, { chunkSize: CHUNK, compressionLevel: 1 })
  tt.not(c.result.digest, a.result.digest, 'the level changes the blob')
  tt.not(c.result.tocDigest, a.result.tocDigest, 'TOC offsets follow the compressed sizes')
  tt.equal(c.result.entries, a.result.entries)
})

t.test('gzip input gives the same blob as plain tar input', async (tt) => {
  const input = memTar(layer)
  const a = await convertBuffer(input, { chunkSize: CHUNK })
  const b = await convertBuffer(gzipSync(input), { chunkSize: CHUNK })
  tt.ok(a.blob.equals(b.blob))
})

t.test('legacy footer', async (tt) => {
  const { blob } = await convertBuffer(memTar(layer), { legacyFooter: true })
  const { tocOffset } = tocOf(blob, 47)
  tt.same(blob.subarray(blob.length - 47), writeFooter(tocOffset, 'legacy'))
  tt.equal(gzipMembers(blob).at(-1)!.length, 47)
})

t.test('an existing TOC and landmarks are dropped; a later duplicate replaces an earlier entry', async (tt) => {
  const input = memTar([
    { name: 'stargz.index.json', content: '{"old":true}' },
    { name: './.no.prefetch.landmark', content: Buffer.from([0x0f]) },
    { name: 'f', content: 'first' },
    { name: 'g', content: 'g' },
    { name: './f', content: 'second' },
  ])
  const { blob } = await convertBuffer(input)
  const { toc } = tocOf(blob)
  tt.same(toc.entries.map((e) => e.name), ['.no.prefetch.landmark', 'g', './f'])
  tt.equal(toc.entries[2]!.digest, sha('second'))
})

t.test('empty layer (only end blocks)', async (tt) => {
  const { blob, result } = await convertBuffer(Buffer.alloc(1024))
  tt.same(tocOf(blob).toc.entries.map((e) => e.name), ['.no.prefetch.landmark'])
  tt.equal(result.entries, 1)
})

t.test('bad input is rejected with a clear error', async (tt) => {
  await tt.rejects(convertBuffer(memTar(layer).subarray(0, 700)), TarError, 'truncated tar')
  await tt.rejects(convertBuffer(Buffer.from('this is not a tar file at all'.repeat(30))), /bad checksum/)
  await tt.rejects(convertBuffer(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(100)])), /zstd input not supported on Node 20/)
  await tt.rejects(convertBuffer(gzipSync(memTar(layer)).subarray(0, 300)), /not a valid gzip stream/)
  await tt.rejects(convertBuffer(Buffer.alloc(0)), /empty/)
  await tt.rejects(convertBuffer(memTar(layer), { chunkSize: 0 }), { code: 'ERR_INVALID_ARGUMENT' })
})

t.test('output stream errors reject the conversion', async (tt) => {
  const out = new Collector()
  out._write = (_c, _e, cb) => cb(new Error('disk full'))
  await tt.rejects(convertLayer(chunksOf(memTar(layer)), out, { chunkSize: CHUNK }), /disk full/)
})
