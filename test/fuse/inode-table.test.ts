import t from 'tap'
import { TocIndex } from '../../src/estargz/toc-index.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, type Toc, type TocEntry } from '../../src/estargz/types.js'
import { S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, makedev } from '../../src/fuse/attr.js'
import { InodeTable } from '../../src/fuse/inode-table.js'

function indexOf(entries: TocEntry[]): TocIndex {
  const toc: Toc = { version: 1, entries }
  return new TocIndex(toc, 1 << 20, { prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK })
}

const T = '2024-01-02T03:04:05Z'
const sample: TocEntry[] = [
  { name: 'etc', type: 'dir', mode: 0o755, modtime: T },
  { name: 'etc/passwd', type: 'reg', size: 10, mode: 0o644, uid: 0, gid: 0, modtime: T, offset: 0 },
  { name: 'etc/passwd-', type: 'hardlink', linkName: 'etc/passwd' },
  { name: 'usr/bin/x', type: 'reg', size: 0, mode: 0o4755, uid: 7, gid: 8, modtime: T },
  { name: 'usr/bin/x2', type: 'hardlink', linkName: 'usr/bin/x' },
  { name: 'usr/bin/x3', type: 'hardlink', linkName: 'usr/bin/x' },
  { name: 'usr/lib/link', type: 'symlink', linkName: '../bin/x', modtime: T },
  { name: 'dev/null', type: 'char', devMajor: 1, devMinor: 3, mode: 0o666 },
  { name: 'dev/sda', type: 'block', devMajor: 8, devMinor: 0, mode: 0o660 },
  { name: 'run/fifo', type: 'fifo', mode: 0o600 },
  { name: 'nomode', type: 'reg', size: 0 },
  { name: 'etc/.wh.shadow', type: 'reg', size: 0, modtime: T },
  { name: 'var', type: 'dir', mode: 0o755 },
  { name: 'var/.wh..wh..opq', type: 'reg', size: 0 },
  { name: 'var/.wh..wh.plnk', type: 'dir' },
  { name: 'var/.wh..wh.plnk/x', type: 'reg', size: 0 },
  { name: 'keep', type: 'reg', size: 0 },
  { name: '.wh.keep', type: 'reg', size: 0 },
  { name: 'stargz.index.json', type: 'reg', size: 0 },
  { name: PREFETCH_LANDMARK, type: 'reg', size: 1 },
  { name: 'sub/' + PREFETCH_LANDMARK, type: 'reg', size: 1 },
  { name: 'x', type: 'dir', xattrs: { 'user.a': Buffer.from('b').toString('base64') } },
]

t.test('names, attributes, hardlinks, whiteouts, hidden entries', async (t) => {
  const tab = InodeTable.build(indexOf(sample))
  const s = (p: string): number => tab.lookup(p)
  t.equal(s(''), 0)
  t.equal(tab.ino(0), 1)
  t.equal(tab.lookupFusePath('/'), 0)
  t.equal(tab.lookupFusePath('/etc/passwd'), s('etc/passwd'))
  t.equal(s('nope'), -1)
  // Hardlinks: one inode, nlink = names.
  t.equal(tab.ino(s('etc/passwd-')), tab.ino(s('etc/passwd')))
  t.equal(tab.nlink(s('etc/passwd')), 2)
  t.equal(tab.nlink(s('usr/bin/x3')), 3)
  t.equal(tab.mode(s('usr/bin/x2')), S_IFREG | 0o4755)
  t.equal(tab.uid(s('usr/bin/x2')), 7)
  t.equal(tab.tocName(s('usr/bin/x2')), 'usr/bin/x')
  t.not(tab.ino(s('usr/bin/x')), tab.ino(s('etc/passwd')))
  // Directories: 2 + subdirs, implied ones included.
  t.equal(tab.mode(s('usr')), S_IFDIR | 0o755, 'implied dir')
  t.equal(tab.nlink(s('usr')), 4, 'usr has bin and lib')
  t.equal(tab.nlink(0), 2 + ['etc', 'usr', 'dev', 'run', 'var', 'sub', 'x'].length)
  t.equal(tab.mode(s('usr/lib/link')), S_IFLNK)
  t.equal(tab.size(s('usr/lib/link')), '../bin/x'.length)
  t.equal(tab.mode(s('dev/null')), S_IFCHR | 0o666)
  t.equal(tab.rdev(s('dev/null')), makedev(1, 3))
  t.equal(tab.rdev(s('dev/sda')), makedev(8, 0))
  t.equal(tab.mode(s('nomode')), S_IFREG, 'absent mode is 0 (omitempty)')
  t.equal(tab.mtimeMs(s('etc')), Date.parse(T))
  // Whiteouts.
  t.equal(s('etc/.wh.shadow'), -1)
  const wh = s('etc/shadow')
  t.ok(tab.isWhiteout(wh))
  t.equal(tab.mode(wh), S_IFCHR)
  t.equal(tab.rdev(wh), 0)
  t.equal(tab.mtimeMs(wh), Date.parse(T))
  t.notOk(tab.isWhiteout(s('keep')), 'real entry wins over its own whiteout')
  t.equal(s('.wh.keep'), -1)
  t.ok(tab.isOpaque(s('var')))
  t.notOk(tab.isOpaque(s('etc')))
  t.equal(s('var/.wh..wh..opq'), -1)
  t.equal(s('var/.wh..wh.plnk'), -1)
  t.equal(s('var/.wh..wh.plnk/x'), -1, 'children of hidden dirs are gone too')
  t.equal(s('stargz.index.json'), -1)
  t.equal(s(PREFETCH_LANDMARK), -1)
  t.ok(s('sub/' + PREFETCH_LANDMARK) >= 0, 'landmark names are only special at the root')
  t.ok(tab.hasXattrs(s('x')))
  // Children: sorted, hidden ones absent.
  const names = (p: string): string[] => [...tab.children(s(p))].map((c) => tab.baseName(c))
  t.same(names(''), ['dev', 'etc', 'keep', 'nomode', 'run', 'sub', 'usr', 'var', 'x'])
  t.same(names('etc'), ['passwd', 'passwd-', 'shadow'])
  t.same(names('var'), [])
  t.equal(tab.parent(s('usr/bin/x')), s('usr/bin'))
})

t.test('bytes per entry for 100k entries', async (t) => {
  const entries: TocEntry[] = []
  for (let d = 0; d < 1000; d++) {
    entries.push({ name: `dir${d}`, type: 'dir', mode: 0o755, modtime: T })
    for (let f = 0; f < 99; f++) entries.push({ name: `dir${d}/file-${f}.txt`, type: 'reg', size: f, mode: 0o644, modtime: T })
  }
  const index = indexOf(entries)
  globalThis.gc?.()
  const before = process.memoryUsage()
  const started = process.hrtime.bigint()
  const tab = InodeTable.build(index)
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  globalThis.gc?.()
  const after = process.memoryUsage()
  const n = tab.count
  t.equal(n, 100_001)
  const own = tab.arrayBytes() / n
  t.comment(`inode table: ${n} entries, arrays ${own.toFixed(1)} B/entry, heap+arrayBuffers delta ${(((after.heapUsed + after.arrayBuffers) - (before.heapUsed + before.arrayBuffers)) / n).toFixed(1)} B/entry, built in ${ms.toFixed(0)} ms`)
  t.ok(own < 80, `own arrays stay under 80 B/entry (${own.toFixed(1)})`)
  // Every name is found again.
  let found = 0
  for (const e of entries) if (tab.lookup(e.name) >= 0) found++
  t.equal(found, entries.length)
})
