import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { addXattrFiles, everyTypeNodes, extractTar, snapshotTree, type TreeNodeSnapshot } from '../../harness/tree.js'
import { blobFromTree, mountBlob, scratch } from '../../harness/fuse-fixtures.js'

const execFileP = promisify(execFile)

// Issue #12: `ls -l` cost one getxattr round trip per entry (security.selinux, ACLs). A layer with
// no xattrs and no opaque directory leaves the xattr ops out, so the kernel answers them itself.

function counter(): { ops: Map<string, number>; onOp: (op: string) => void } {
  const ops = new Map<string, number>()
  return { ops, onOp: (op) => { ops.set(op, (ops.get(op) ?? 0) + 1) } }
}

t.test('ls -l on a layer without xattrs: no getxattr/listxattr reaches JS', async (t) => {
  const dir = await scratch(t)
  const nodes = everyTypeNodes().filter((n) => !n.path.includes('.wh.'))
  const { blob } = await blobFromTree(dir, nodes)
  const c = counter()
  const { mnt } = await mountBlob(t, dir, blob, { onOp: c.onOp })
  const { stdout } = await execFileP('ls', ['-lR', mnt])
  t.ok(stdout.includes('hosts'), 'ls -lR lists the tree')
  t.equal(c.ops.get('getxattr') ?? 0, 0, 'no getxattr op')
  t.equal(c.ops.get('listxattr') ?? 0, 0, 'no listxattr op')
  const err = await execFileP('getfattr', ['-n', 'user.x', join(mnt, 'etc/hosts')]).then(() => '', (e: { stderr?: string }) => String(e.stderr))
  t.match(err, /not supported/i, 'the kernel answers the xattr request itself')
  t.ok((c.ops.get('getattr') ?? 0) + (c.ops.get('readdir') ?? 0) > 0, 'the counters count')
})

for (const tree of ['object', 'compact'] as const) {
  t.test(`every entry type through the ${tree} tree: xattrs and opaque dirs still served`, async (t) => {
    const dir = await scratch(t)
    const { tar, blob } = await blobFromTree(dir, everyTypeNodes(), { extra: addXattrFiles })
    const extracted = join(dir, 'extracted')
    await extractTar(tar, extracted)
    const want = await snapshotTree(extracted)
    const wh = want['etc/.wh.removed'] as TreeNodeSnapshot
    delete want['etc/.wh.removed']
    want['etc/removed'] = { type: 'char', mode: 0, uid: 0, gid: 0, size: 0, mtimeNs: wh.mtimeNs, rdev: [0, 0] }
    delete want['opaque/.wh..wh..opq']
    ;(want['opaque'] as TreeNodeSnapshot).xattrs = { 'trusted.overlay.opaque': Buffer.from('y').toString('base64') }
    const c = counter()
    const { mnt, mount } = await mountBlob(t, dir, blob, { tree, onOp: c.onOp })
    t.equal(mount.table.constructor.name, tree === 'compact' ? 'CompactIndex' : 'InodeTable')
    const secs = (s: Record<string, TreeNodeSnapshot>): Record<string, TreeNodeSnapshot> =>
      Object.fromEntries(Object.entries(s).map(([k, v]) => [k, { ...v, mtimeNs: ((BigInt(v.mtimeNs) + 500_000_000n) / 1_000_000_000n).toString() }]))
    t.same(secs(await snapshotTree(mnt)), secs(want))
    t.ok((c.ops.get('getxattr') ?? 0) + (c.ops.get('listxattr') ?? 0) > 0, 'xattr ops served')
  })
}
