// stargzd-test: e2e (extracts tars with their owners and xattrs, so it needs root)
import t from 'tap'
import { lstat, readFile, readlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { emptyHeader } from '../../src/tar/header.js'
import { encodeHeader } from '../../src/tar/writer.js'
import { memTar } from '../../harness/memtar.js'
import { extractTar, sh, tempDir } from '../../harness/tree.js'

t.test('plain entries use one ustar block, no PAX', async (tt) => {
  const h = emptyHeader('etc/passwd', '0')
  h.mode = 0o644
  h.size = 10
  h.mtime = 1_600_000_000
  h.uname = 'root'
  const b = encodeHeader(h)
  tt.equal(b.length, 512)
  tt.equal(b.toString('latin1', 257, 265), 'ustar\x0000')
  tt.equal(b.toString('latin1', 100, 108), '0000644\0')
  tt.equal(b.toString('latin1', 124, 136), '00000000012\0')
})

t.test('values that do not fit ustar go into PAX records', async (tt) => {
  const cases: [string, (h: ReturnType<typeof emptyHeader>) => void, RegExp][] = [
    ['long name', (h) => { h.name = 'x'.repeat(101) }, /\d+ path=x{101}\n/],
    ['non-ASCII name', (h) => { h.name = 'café' }, /path=café/],
    ['long link', (h) => { h.typeflag = '2'; h.linkname = 'y'.repeat(101) }, /linkpath=y{101}/],
    ['big uid', (h) => { h.uid = 2_097_152 }, /uid=2097152/],
    ['negative mtime', (h) => { h.mtime = -5 }, /mtime=-5\n/],
    ['fractional mtime', (h) => { h.mtime = 10; h.mtimeNsec = 5e8 }, /mtime=10\.5\n/],
    ['long uname', (h) => { h.uname = 'u'.repeat(33) }, /uname=u{33}/],
    // The xattr value is binary on purpose: PAX records carry raw bytes.
    // eslint-disable-next-line no-control-regex
    ['xattr', (h) => { h.xattrs.set('user.k', Buffer.from([0, 1])) }, /SCHILY\.xattr\.user\.k=\x00\x01\n/],
  ]
  for (const [what, set, re] of cases) {
    const h = emptyHeader('f', '0')
    set(h)
    const b = encodeHeader(h)
    tt.equal(b.length >= 1536, true, `${what}: PAX header + data + entry`)
    tt.equal(String.fromCharCode(b[156]!), 'x', `${what}: typeflag x`)
    tt.match(b.toString('utf8', 512, b.length - 512), re, what)
  }
})

t.test('GNU tar extracts what our writer wrote', async (tt) => {
  const dir = await tempDir(tt)
  const deepName = `${'a'.repeat(120)}/${'b'.repeat(120)}/${'c'.repeat(50)}/file` // > 255, no ustar split
  const tar = memTar([
    { name: 'dir/', type: '5', mode: 0o1755, mtime: 1_000_000_000 },
    { name: deepName, content: 'deep', mode: 0o640, uid: 3_000_000, gid: 7, mtime: -86_400 },
    { name: 'dir/ünïcödé', content: 'u', mtime: 1_234_567_890, mtimeNsec: 250_000_000 },
    { name: 'dir/link', type: '2', linkname: deepName },
    { name: 'dir/hard', type: '1', linkname: 'dir/ünïcödé' },
    { name: 'dir/dev', type: '3', devmajor: 4095, devminor: 1_000_000, mode: 0o600 },
    { name: 'dir/x', content: 'x', xattrs: { 'user.bin': Buffer.from([0, 0xff]) } },
  ])
  const f = join(dir, 'our.tar')
  await writeFile(f, tar)
  await extractTar(f, join(dir, 'out'))
  const out = join(dir, 'out')
  const st = await lstat(join(out, deepName))
  tt.same([st.uid, st.gid, st.mode & 0o7777, st.mtimeMs], [3_000_000, 7, 0o640, -86_400_000])
  tt.equal(await readFile(join(out, deepName), 'utf8'), 'deep')
  tt.equal((await lstat(join(out, 'dir/ünïcödé'), { bigint: true })).mtimeNs, 1_234_567_890_250_000_000n)
  tt.equal(await readlink(join(out, 'dir/link')), deepName)
  tt.equal((await lstat(join(out, 'dir/hard'))).ino, (await lstat(join(out, 'dir/ünïcödé'))).ino, 'hardlink')
  tt.equal((await lstat(join(out, 'dir'))).mode & 0o7777, 0o1755)
  const dev = await lstat(join(out, 'dir/dev'), { bigint: true })
  tt.same([Number(((dev.rdev >> 8n) & 0xfffn) | ((dev.rdev >> 32n) & ~0xfffn)), Number((dev.rdev & 0xffn) | ((dev.rdev >> 12n) & ~0xffn))], [4095, 1_000_000], 'largest Linux device numbers')
  const { stdout } = await sh('tar', ['--xattrs', '--xattrs-include=*', '--format=pax', '-C', out, '-cf', '-', 'dir/x'])
  tt.match(stdout, /SCHILY\.xattr\.user\.bin/, 'xattr restored on disk')
})
