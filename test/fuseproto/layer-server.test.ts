/**
 * The protocol backend against the real kernel: a layer of every entry type mounted through
 * src/fuseproto shows exactly what extracting its tar shows (whiteouts in overlay form, opaque
 * dirs as xattrs), hardlinks share inode numbers, the state file answers, writes are EROFS.
 * (test/fuse/layer-fs.test.ts passes whole with STARGZ_FUSE_BACKEND=proto too.)
 */
import t from 'tap'
import { lstat, readFile, readdir, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pino } from 'pino'
import { blobFromTree, mountBlob, scratch } from '../../harness/fuse-fixtures.js'
import { addXattrFiles, everyTypeNodes, extractTar, manySmallFilesNodes, snapshotTree, type TreeNodeSnapshot } from '../../harness/tree.js'
import { ProtoBackend } from '../../src/fuseproto/backend.js'
import { listMounts } from '../../src/mounts/mount-table.js'

const backend = new ProtoBackend({ log: pino({ level: 'silent' }) })
const seconds = (snap: Record<string, TreeNodeSnapshot>): Record<string, TreeNodeSnapshot> =>
  Object.fromEntries(Object.entries(snap).map(([k, v]) => [k, { ...v, mtimeNs: ((BigInt(v.mtimeNs) + 500_000_000n) / 1_000_000_000n).toString() }]))

t.test('every entry type: the mount equals tar extraction', async (t) => {
  const dir = await scratch(t, 'stargz-fuseproto-')
  const { tar, blob } = await blobFromTree(dir, everyTypeNodes(), { extra: addXattrFiles })
  await extractTar(tar, join(dir, 'x'))
  const want = await snapshotTree(join(dir, 'x'))
  const wh = want['etc/.wh.removed'] as TreeNodeSnapshot
  delete want['etc/.wh.removed']
  want['etc/removed'] = { type: 'char', mode: 0, uid: 0, gid: 0, size: 0, mtimeNs: wh.mtimeNs, rdev: [0, 0] }
  delete want['opaque/.wh..wh..opq']
  ;(want['opaque'] as TreeNodeSnapshot).xattrs = { 'trusted.overlay.opaque': Buffer.from('y').toString('base64') }
  const { mnt } = await mountBlob(t, dir, blob, { backend })
  t.ok((await listMounts()).some((m) => m.mountpoint === mnt && m.fsType === 'fuse.stargz'), 'served by our protocol code')
  t.same(seconds(await snapshotTree(mnt)), seconds(want))
  const a = await lstat(join(mnt, 'etc/hosts'))
  t.equal(a.ino, (await lstat(join(mnt, 'etc/hosts.hard'))).ino, 'hardlinks share an inode')
  t.equal((await lstat(mnt)).ino, 1, 'root is inode 1')
  await t.rejects(writeFile(join(mnt, 'new'), 'x'), { code: 'EROFS' })
  const st = await statfs(mnt)
  t.ok(st.files > 0, 'statfs answers')
})

t.test('the state file and a big directory read in pieces', async (t) => {
  const dir = await scratch(t, 'stargz-fuseproto-')
  const { tree, blob } = await blobFromTree(dir, manySmallFilesNodes(3000))
  const { mnt, layer } = await mountBlob(t, dir, blob, { backend })
  const names = await readdir(join(mnt, 'small/d3'))
  t.same(names.sort(), (await readdir(join(tree, 'small/d3'))).sort(), 'a 177-entry directory lists whole (several READDIR replies)')
  let wrong = 0
  for (const n of names) if (!(await readFile(join(mnt, 'small/d3', n))).equals(await readFile(join(tree, 'small/d3', n)))) wrong++
  t.equal(wrong, 0, 'every file of it reads right')
  const state = JSON.parse(await readFile(join(mnt, '.stargz-snapshotter', `${layer.digest}.json`), 'utf8')) as { digest: string; fetchedSize: number }
  t.equal(state.digest, layer.digest)
  t.ok(state.fetchedSize > 0, 'state file shows fetched bytes')
  t.same(await readdir(join(mnt, '.stargz-snapshotter')), [`${layer.digest}.json`])
})
