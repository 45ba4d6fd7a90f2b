/**
 * Issue #10 §1: a TOC whose root entry is named "/" (umoci, `tar -P`, any tar that starts with "/"
 * or "./", copied as is by the reference converter and by ours) was refused by every read path
 * with "name is absolute (rule: name-absolute)". Names are now cleaned relative to the root as the
 * reference reader does; only what is still wrong after cleaning is refused.
 */
import t from 'tap'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { normaliseName } from '../../src/estargz/toc-validate.js'
import { StargzError } from '../../src/errors.js'
import { BufferSource, buildMiniEstargz } from '../../harness/mini-estargz.js'
import { convertBuffer, memTar } from '../../harness/memtar.js'

const hello = Buffer.from('hello from an absolute name\n')

t.test('normaliseName cleans like the reference reader (path.Clean("/" + name))', async (t) => {
  const table: Array<[string, string]> = [
    ['/', ''], ['./', ''], ['.', ''], ['', ''], ['//', ''], ['/./', ''],
    ['/x', 'x'], ['./x', 'x'], ['x', 'x'], ['x/', 'x'], ['/x/', 'x'], ['.//x//y/.', 'x/y'],
    ['a/../b', 'b'], ['/a/b/../c', 'a/c'], ['a/..', ''],
  ]
  for (const [raw, want] of table) t.equal(normaliseName(raw, 4096), want, JSON.stringify(raw))
  for (const bad of ['..', '../x', '/../x', './../x', 'a/../../x', 'a/b/../../..']) {
    t.throws(() => normaliseName(bad, 4096), { rule: 'name-escape' } as unknown as Error, JSON.stringify(bad))
  }
  t.throws(() => normaliseName('/a\0b', 4096), { rule: 'name-nul' } as unknown as Error)
})

t.test('a TOC with a "/" root entry and "/"-prefixed names opens and reads', async (t) => {
  const m = buildMiniEstargz([
    { name: '/', type: 'dir' },
    { name: '/etc/', type: 'dir' },
    { name: '/etc/hello.txt', data: hello },
    { name: './etc/dot.txt', data: hello },
    { name: '/etc/hard', type: 'hardlink', linkName: '/etc/hello.txt' },
    { name: '/etc/hard2', type: 'hardlink', linkName: './etc/dot.txt' },
    { name: '/etc/link', type: 'symlink', linkName: '/etc/hello.txt' },
  ])
  const r = await BlobReader.open(new BufferSource(m.blob), { tocDigest: m.tocDigest })
  t.equal(r.lookup('')?.type, 'dir', 'root')
  t.same(r.index.children.get('')?.sort(), ['etc'])
  t.same(r.index.children.get('etc')?.sort(), ['etc/dot.txt', 'etc/hard', 'etc/hard2', 'etc/hello.txt', 'etc/link'])
  t.same(await r.readFile('etc/hello.txt'), hello)
  t.same(await r.readFile('etc/hard'), hello, 'hardlink target "/etc/hello.txt" cleaned')
  t.same(await r.readFile('etc/hard2'), hello, 'hardlink target "./etc/dot.txt" cleaned')
  t.equal(r.lookup('etc/link')?.linkName, '/etc/hello.txt', 'symlink targets are data, not names: kept')
  const v = await r.verifyAll()
  t.equal(v.unverified, 0)
})

t.test('refused after cleaning: two entries with one name, escapes', async (t) => {
  const cases: Array<[string, Parameters<typeof buildMiniEstargz>[0], string]> = [
    ['"./a" and "/a"', [{ name: './a', data: hello }, { name: '/a', data: hello }], 'duplicate-name'],
    ['"/" and "./" both root', [{ name: '/', type: 'dir' }, { name: './', type: 'dir' }], 'duplicate-name'],
    ['"a/" and "a"', [{ name: 'a/', type: 'dir' }, { name: 'a', type: 'dir' }], 'duplicate-name'],
    ['"../x" escapes', [{ name: '../x', data: hello }], 'name-escape'],
    ['hardlink target escapes', [{ name: 'x', data: hello }, { name: 'h', type: 'hardlink', linkName: '/../x' }], 'name-escape'],
    ['"/" as a file', [{ name: '/', data: hello }], 'name-empty'],
  ]
  for (const [label, files, rule] of cases) {
    const m = buildMiniEstargz(files)
    const err = await BlobReader.open(new BufferSource(m.blob)).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof StargzError, `${label}: typed error`)
    t.equal((err as { rule?: string } | undefined)?.rule, rule, `${label}: ${(err as Error | undefined)?.message}`)
  }
})

t.test('our writer keeps "/" names as the reference does, and our reader opens its output', async (t) => {
  const tar = memTar([
    { name: '/', type: '5', mode: 0o755 },
    { name: '/etc/', type: '5', mode: 0o755 },
    { name: '/etc/hello.txt', content: hello },
    { name: '/etc/hard', type: '1', linkname: '/etc/hello.txt' },
    { name: './etc/again.txt', content: 'first' },
    { name: '/etc/again.txt', content: 'second wins' },
  ])
  const { blob, result } = await convertBuffer(tar)
  const r = await BlobReader.open(new BufferSource(blob), { tocDigest: result.tocDigest })
  const raw = r.toc.entries.map((e) => e.name)
  t.ok(raw.includes(''), 'root entry present (cleaned)')
  t.same(await r.readFile('etc/hard'), hello)
  t.same((await r.readFile('etc/again.txt')).toString(), 'second wins', '"./x" then "/x" is one file, the later wins')
  t.equal((await r.verifyAll()).unverified, 0)
})

t.test('our writer refuses a tar entry that climbs above the root', async (t) => {
  await t.rejects(convertBuffer(memTar([{ name: '../evil', content: 'x' }])), { code: 'ERR_INVALID_ARGUMENT', message: /"\.\.\/evil"/ })
  await t.rejects(convertBuffer(memTar([{ name: 'a', content: 'x' }, { name: 'h', type: '1', linkname: '/../a' }])), { code: 'ERR_INVALID_ARGUMENT' })
})
