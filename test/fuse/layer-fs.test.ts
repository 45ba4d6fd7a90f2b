import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { lstat, open, readdir, readFile, readlink, writeFile, mkdir, unlink, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { BufferSource, buildMiniEstargz } from '../../harness/mini-estargz.js'
import { addXattrFiles, everyTypeNodes, extractTar, patternBytes, snapshotTree, type TreeNodeSnapshot } from '../../harness/tree.js'
import { blobFromTree, mountBlob, scratch } from '../../harness/fuse-fixtures.js'
import { STATE_FILE_SIZE } from '../../src/fuse/state-file.js'
import { isMounted } from '../../src/fuse/unmount.js'

const execFileP = promisify(execFile)

/** The TOC carries whole seconds (RFC 3339, rounded like Go's Time.Round); compare at that precision. */
function toSeconds(snap: Record<string, TreeNodeSnapshot>): Record<string, TreeNodeSnapshot> {
  const out: Record<string, TreeNodeSnapshot> = {}
  for (const [k, v] of Object.entries(snap)) out[k] = { ...v, mtimeNs: ((BigInt(v.mtimeNs) + 500_000_000n) / 1_000_000_000n).toString() }
  return out
}

t.test('every entry type: the mount shows what extracting the tar gives, whiteouts in overlay form', async (t) => {
  const dir = await scratch(t)
  const { tar, blob } = await blobFromTree(dir, everyTypeNodes(), { extra: addXattrFiles })
  const extracted = join(dir, 'extracted')
  await extractTar(tar, extracted)
  const want = await snapshotTree(extracted)
  // .wh.NAME → NAME as a 0/0 character device owned by root with no permission bits.
  const wh = want['etc/.wh.removed'] as TreeNodeSnapshot
  delete want['etc/.wh.removed']
  want['etc/removed'] = { type: 'char', mode: 0, uid: 0, gid: 0, size: 0, mtimeNs: wh.mtimeNs, rdev: [0, 0] }
  // .wh..wh..opq → hidden, its directory opaque.
  delete want['opaque/.wh..wh..opq']
  ;(want['opaque'] as TreeNodeSnapshot).xattrs = { 'trusted.overlay.opaque': Buffer.from('y').toString('base64') }

  const { mnt } = await mountBlob(t, dir, blob)
  const got = await snapshotTree(mnt)
  t.same(toSeconds(got), toSeconds(want))
  t.notOk('stargz.index.json' in got, 'TOC entry hidden')
  t.notOk('.prefetch.landmark' in got || '.no.prefetch.landmark' in got, 'landmarks hidden')
  for (const hidden of ['stargz.index.json', '.no.prefetch.landmark', 'opaque/.wh..wh..opq', 'etc/.wh.removed']) {
    await t.rejects(lstat(join(mnt, hidden)), { code: 'ENOENT' }, `lookup of ${hidden} fails`)
  }
})

t.test('stat fields: inode numbers, link counts, devices, symlinks', async (t) => {
  const dir = await scratch(t)
  const { blob } = await blobFromTree(dir, everyTypeNodes())
  const { mnt } = await mountBlob(t, dir, blob)
  const a = await lstat(join(mnt, 'etc/hosts'))
  const b = await lstat(join(mnt, 'etc/hosts.hard'))
  t.equal(a.ino, b.ino, 'hardlinks share an inode')
  t.equal(a.nlink, 2)
  t.equal(b.nlink, 2)
  const deep = await lstat(join(mnt, 'long/hard-to-deep'))
  t.equal(deep.nlink, 2)
  t.not(deep.ino, a.ino)
  const root = await lstat(mnt)
  t.equal(root.ino, 1)
  const subdirs = (await readdir(mnt, { withFileTypes: true })).filter((d) => d.isDirectory()).length
  t.equal(root.nlink, 2 + subdirs, 'directory nlink = 2 + subdirectories')
  const dev = await lstat(join(mnt, 'dev/bigdev'))
  t.ok(dev.isCharacterDevice())
  t.equal(dev.rdev, ((70000 & 0xff) | (300 << 8) | ((70000 & ~0xff) << 12)) >>> 0)
  t.ok((await lstat(join(mnt, 'dev/loop0'))).isBlockDevice())
  t.ok((await lstat(join(mnt, 'run/fifo'))).isFIFO())
  const link = await lstat(join(mnt, 'dangling'))
  t.ok(link.isSymbolicLink())
  t.equal(link.size, '/does/not/exist'.length)
  t.equal(await readlink(join(mnt, 'dangling')), '/does/not/exist')
  const suid = await lstat(join(mnt, 'bin/suid'))
  t.equal(suid.mode & 0o7777, 0o4755)
  t.equal((await lstat(join(mnt, 'tmp'))).mode & 0o7777, 0o1777)
  const big = await lstat(join(mnt, 'owners/bigid'))
  t.equal(big.uid, 3_000_000)
  t.equal(big.gid, 4_000_000)
  t.equal((await lstat(join(mnt, 'times/old'))).mtimeMs, 1000)
  const names = await readdir(mnt)
  t.notOk(names.includes('.stargz-snapshotter'), 'state dir not listed')
  t.notOk(names.includes('stargz.index.json'))
  // readdir carries attributes: `find -printf %y` uses d_type without a stat per entry.
  const { stdout } = await execFileP('find', [mnt, '-mindepth', '1', '-maxdepth', '1', '-printf', '%y %f\n'])
  t.match(stdout, /^d etc$/m)
  t.match(stdout, /^l dangling$/m)
  t.match(stdout, /^f noperm$/m)
})

t.test('bytes, state file, first-access hook, read-only', async (t) => {
  const dir = await scratch(t)
  const big = patternBytes(3 * 1024 * 1024 + 17, 4)
  const { blob } = await blobFromTree(dir, [
    { type: 'file', path: 'data/big.bin', content: big },
    { type: 'file', path: 'data/small.txt', content: 'small\n' },
    { type: 'file', path: 'data/empty', content: '' },
  ], { chunkSize: 256 * 1024 })
  // auto_cache rechecks attributes on every open here, so the state file is fresh each time.
  const { mnt, layer } = await mountBlob(t, dir, blob, { autoCacheCheckSec: 0 })
  const statePath = join(mnt, '.stargz-snapshotter', `${layer.digest}.json`)
  const st = await stat(statePath)
  t.equal(st.size, STATE_FILE_SIZE)
  t.equal(st.mode & 0o7777, 0o400)
  t.same(await readdir(join(mnt, '.stargz-snapshotter')), [`${layer.digest}.json`])
  const before = JSON.parse(await readFile(statePath, 'utf8')) as Record<string, unknown>
  t.equal(before.digest, layer.digest)
  t.equal(before.fetchedSize, 0)
  t.equal(before.size, (await stat(blob)).size)

  t.ok((await readFile(join(mnt, 'data/big.bin'))).equals(big), 'big file byte-exact')
  t.equal(await readFile(join(mnt, 'data/small.txt'), 'utf8'), 'small\n')
  t.equal((await readFile(join(mnt, 'data/empty'))).length, 0)
  // Unaligned read across a chunk boundary.
  const fh = await open(join(mnt, 'data/big.bin'))
  const part = Buffer.alloc(100_000)
  const { bytesRead } = await fh.read(part, 0, part.length, 256 * 1024 - 3333)
  await fh.close()
  t.equal(bytesRead, part.length)
  t.ok(part.equals(big.subarray(256 * 1024 - 3333, 256 * 1024 - 3333 + 100_000)))
  await readFile(join(mnt, 'data/small.txt'))
  t.same(layer.firstAccessed.sort(), ['data/big.bin', 'data/empty', 'data/small.txt'], 'hook fired once per file')

  const after = JSON.parse(await readFile(statePath, 'utf8')) as { fetchedSize: number; fetchedPercent: number }
  t.ok(after.fetchedSize > 0, 'state file shows fetched bytes')
  t.ok(after.fetchedPercent > 0)

  await t.rejects(writeFile(join(mnt, 'new'), 'x'), { code: 'EROFS' })
  await t.rejects(writeFile(join(mnt, 'data/small.txt'), 'x'), { code: 'EROFS' })
  await t.rejects(mkdir(join(mnt, 'newdir')), { code: 'EROFS' })
  await t.rejects(unlink(join(mnt, 'data/small.txt')), { code: 'EROFS' })
  await t.rejects(readFile(join(mnt, 'nope')), { code: 'ENOENT' })
  const { stdout } = await execFileP('stat', ['-f', '-c', '%T %l', mnt])
  t.match(stdout, /fuse/)
})

t.test('a tampered blob gives EIO, never wrong bytes, and the mount keeps serving', async (t) => {
  const dir = await scratch(t)
  const good = randomBytes(200_000)
  const other = Buffer.from('still fine\n')
  // The second chunk's digest in the TOC does not match its bytes (verify failure).
  const m = buildMiniEstargz([
    { name: 'bad.bin', data: good, chunkSize: 64 * 1024 },
    { name: 'ok.txt', data: other },
  ], {
    mutateToc: (toc) => {
      const e = toc.entries.find((x) => x.name === 'bad.bin' && x.chunkOffset === 64 * 1024)
      if (e) e.chunkDigest = 'sha256:' + '0'.repeat(64)
    },
  })
  const { mnt, mount } = await mountBlob(t, dir, { source: new BufferSource(m.blob), digest: 'sha256:' + 'a'.repeat(64) })
  // The first chunk verifies: reading it works.
  const fh = await open(join(mnt, 'bad.bin'))
  const head = Buffer.alloc(1000)
  await fh.read(head, 0, 1000, 0)
  t.ok(head.equals(good.subarray(0, 1000)))
  await t.rejects(fh.read(Buffer.alloc(1000), 0, 1000, 64 * 1024 + 10), { code: 'EIO' }, 'bad chunk → EIO')
  await fh.close()
  // A whole-file read stops at the bad chunk with EIO; what came before it is the true prefix.
  // (Node's readFile takes the kernel's short read for EOF, so use cat.)
  const r = await execFileP('cat', [join(mnt, 'bad.bin')], { encoding: 'buffer', maxBuffer: 1 << 24 }).then(() => undefined, (e: { stdout: Buffer; stderr: Buffer }) => e)
  t.ok(r, 'cat fails')
  t.match(String(r?.stderr), /Input\/output error/)
  t.ok(r?.stdout.equals(good.subarray(0, r.stdout.length)), 'bytes before the error are right')
  t.ok((r?.stdout.length ?? Infinity) <= 64 * 1024, 'nothing from the bad chunk')
  t.equal(await readFile(join(mnt, 'ok.txt'), 'utf8'), 'still fine\n', 'other files still served')
  t.ok(mount.stats().readErrors >= 2)
  t.ok(await isMounted(mnt))
})

t.test('a flipped byte in a compressed member gives EIO', async (t) => {
  const dir = await scratch(t)
  const data = randomBytes(100_000)
  const m = buildMiniEstargz([{ name: 'f.bin', data }, { name: 'g.txt', data: Buffer.from('g\n') }])
  const e = m.toc.entries.find((x) => x.name === 'f.bin') as { offset: number }
  const corrupt = Buffer.from(m.blob)
  const at = e.offset + 5000
  corrupt[at] = (corrupt[at] as number) ^ 0xff
  const { mnt } = await mountBlob(t, dir, { source: new BufferSource(corrupt), digest: 'sha256:' + 'b'.repeat(64) })
  await t.rejects(execFileP('cat', [join(mnt, 'f.bin')], { encoding: 'buffer', maxBuffer: 1 << 24 }), /Input\/output error/)
  t.equal(await readFile(join(mnt, 'g.txt'), 'utf8'), 'g\n')
})

t.test('16 parallel readers (separate processes) see the right bytes', async (t) => {
  const dir = await scratch(t)
  const files = Array.from({ length: 8 }, (_, i) => ({ type: 'file' as const, path: `p/f${i}.bin`, content: patternBytes(1_000_000 + i * 77_777, 100 + i) }))
  const { blob } = await blobFromTree(dir, files, { chunkSize: 128 * 1024 })
  const { mnt } = await mountBlob(t, dir, blob)
  const { createHash } = await import('node:crypto')
  const want = new Map(files.map((f) => [f.path, createHash('sha256').update(f.content).digest('hex')]))
  const jobs = Array.from({ length: 16 }, (_, i) => files[i % files.length] as (typeof files)[number])
  const results = await Promise.all(jobs.map((f) => execFileP('sha256sum', [join(mnt, f.path)])))
  results.forEach((r, i) => {
    const f = jobs[i] as (typeof files)[number]
    t.equal(r.stdout.split(' ')[0], want.get(f.path), `reader ${i} (${f.path})`)
  })
})

t.test('close is safe twice and leaves nothing mounted', async (t) => {
  const dir = await scratch(t)
  const m = buildMiniEstargz([{ name: 'a', data: Buffer.from('a') }])
  const { mnt, mount } = await mountBlob(t, dir, { source: new BufferSource(m.blob), digest: 'sha256:' + 'c'.repeat(64) })
  t.ok(await isMounted(mnt))
  t.equal(await mount.close(), 'clean')
  t.equal(await mount.close(), 'clean', 'second close resolves the same')
  t.notOk(await isMounted(mnt))
})
