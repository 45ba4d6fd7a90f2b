import t from 'tap'
import { execFile } from 'node:child_process'
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { unmountPath } from '../../src/fuse/unmount.js'
import { extractTar, snapshotTree, type NodeSpec, type TreeNodeSnapshot } from '../../harness/tree.js'
import { blobFromTree, mountBlob, scratch } from '../../harness/fuse-fixtures.js'

const execFileP = promisify(execFile)
const M = 1_700_000_000

const lowerNodes: NodeSpec[] = [
  { type: 'dir', path: 'etc', mode: 0o755, mtime: M },
  { type: 'file', path: 'etc/keep', content: 'lower keep\n', mode: 0o644, mtime: M },
  { type: 'file', path: 'etc/gone', content: 'deleted above\n', mode: 0o644, mtime: M },
  { type: 'file', path: 'etc/replaced', content: 'old\n', mode: 0o644, mtime: M },
  { type: 'dir', path: 'var/cache', mode: 0o755, mtime: M },
  { type: 'file', path: 'var/cache/old1', content: '1', mtime: M },
  { type: 'file', path: 'var/cache/old2', content: '2', mtime: M },
  { type: 'dir', path: 'gonedir/sub', mode: 0o755, mtime: M },
  { type: 'file', path: 'gonedir/sub/f', content: 'f', mtime: M },
  { type: 'symlink', path: 'etc/link', target: 'keep', mtime: M },
  { type: 'file', path: 'bin/tool', content: 'tool', mode: 0o755, mtime: M },
  { type: 'hardlink', path: 'bin/tool2', target: 'bin/tool' },
]

const upperNodes: NodeSpec[] = [
  { type: 'dir', path: 'etc', mode: 0o750, mtime: M + 10 },
  { type: 'file', path: 'etc/.wh.gone', content: '', mtime: M + 10 },
  { type: 'file', path: 'etc/replaced', content: 'new contents\n', mode: 0o600, mtime: M + 10 },
  { type: 'file', path: 'etc/added', content: 'added\n', mtime: M + 10 },
  { type: 'dir', path: 'var/cache', mode: 0o755, mtime: M + 10 },
  { type: 'file', path: 'var/cache/.wh..wh..opq', content: '', mtime: M + 10 },
  { type: 'file', path: 'var/cache/fresh', content: 'fresh', mtime: M + 10 },
  { type: 'file', path: '.wh.gonedir', content: '', mtime: M + 10 },
]

/** Applies a layer tar on top of `dest` the way container runtimes unpack: whiteouts first. */
async function applyLayer(tar: string, dest: string): Promise<void> {
  const { stdout } = await execFileP('tar', ['-tf', tar])
  for (const raw of stdout.split('\n')) {
    const name = raw.replace(/^\.\//, '').replace(/\/$/, '')
    const base = basename(name)
    const dir = dirname(name)
    if (base === '.wh..wh..opq') {
      for (const c of await readdir(join(dest, dir)).catch(() => [] as string[])) await rm(join(dest, dir, c), { recursive: true, force: true })
    } else if (base.startsWith('.wh.')) {
      await rm(join(dest, dir, base.slice(4)), { recursive: true, force: true })
    }
  }
  await mkdir(dest, { recursive: true })
  await execFileP('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '--exclude=.wh.*', '-xpf', tar, '-C', dest])
}

/** Root aside; mtimes at the TOC's whole-second precision (directories made implicitly carry fractions). */
function comparable(s: Record<string, TreeNodeSnapshot>): Record<string, TreeNodeSnapshot> {
  const out: Record<string, TreeNodeSnapshot> = {}
  for (const [k, v] of Object.entries(s)) {
    if (k !== '.') out[k] = { ...v, mtimeNs: ((BigInt(v.mtimeNs) + 500_000_000n) / 1_000_000_000n).toString() }
  }
  return out
}

t.test('overlayfs over two FUSE layers equals extracting the layers in order', async (t) => {
  const dir = await scratch(t)
  const lower = await blobFromTree(join(dir, 'l1'), lowerNodes)
  const upper = await blobFromTree(join(dir, 'l2'), upperNodes)
  const expected = join(dir, 'expected')
  await extractTar(lower.tar, expected)
  await applyLayer(upper.tar, expected)

  const l1 = await mountBlob(t, dir, lower.blob, { name: 'm1' })
  const l2 = await mountBlob(t, dir, upper.blob, { name: 'm2' })
  const merged = join(dir, 'merged')
  await mkdir(merged)
  await execFileP('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${l2.mnt}:${l1.mnt}`, merged])
  // Registered after the layer mounts, so (teardowns run last-in first-out) it goes first.
  t.teardown(() => unmountPath(merged))

  const want = comparable(await snapshotTree(expected))
  const got = comparable(await snapshotTree(merged))
  t.same(got, want)
  t.notOk('etc/gone' in got, 'whiteout hides the lower file')
  t.notOk('gonedir' in got, 'whiteout hides a lower directory')
  t.same(Object.keys(got).filter((k) => k.startsWith('var/cache/')), ['var/cache/fresh'], 'opaque directory hides lower entries')
  t.equal(got['etc']?.mode, 0o750, 'upper directory attributes win')

  // The copy in the merged view reads through both FUSE layers.
  await copyFile(join(merged, 'etc/keep'), join(dir, 'keep.copy'))
  const { stdout } = await execFileP('cat', [join(dir, 'keep.copy'), join(merged, 'etc/replaced')])
  t.equal(stdout, 'lower keep\nnew contents\n')
})
