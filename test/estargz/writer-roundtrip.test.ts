// stargzd-test: e2e (extracts tars with their owners and xattrs, so it needs root)
/**
 * Round trips: tree → GNU tar → convertLayer → tar -xzf must give back exactly the tree
 * (plus stargz.index.json and the landmark), compared node by node.
 */
import t, { type Test } from 'tap'
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  ESTARGZ_EXTRA_FILES, addXattrFiles, createTar, everyTypeNodes, extractTar, manySmallFilesNodes, patternBytes,
  sh, snapshotTree, tempDir, writeTree, type NodeSpec, type TreeNodeSnapshot,
} from '../../harness/tree.js'
import { convertFile } from '../../harness/convert.js'
import type { ConvertOptions } from '../../src/estargz/writer.js'

interface RoundTripOpts { format?: 'pax' | 'gnu'; xattrs?: boolean; gzipInput?: boolean; convert?: ConvertOptions }

async function roundTrip(tt: Test, nodes: NodeSpec[], o: RoundTripOpts = {}): Promise<Record<string, TreeNodeSnapshot>> {
  const dir = await tempDir(tt)
  const src = join(dir, 'src')
  await mkdir(src)
  await writeTree(src, nodes)
  if (o.xattrs) await addXattrFiles(src)
  let input = join(dir, 'in.tar')
  await createTar(src, input, o.format ?? 'pax')
  if (o.gzipInput) {
    await sh('gzip', ['-k', input])
    input += '.gz'
  }
  const out = join(dir, 'out.esgz')
  await convertFile(input, out, o.convert)
  await extractTar(input, join(dir, 'a'))
  await extractTar(out, join(dir, 'b'))
  const a = await snapshotTree(join(dir, 'a'))
  const b = await snapshotTree(join(dir, 'b'), ESTARGZ_EXTRA_FILES)
  tt.same(Object.keys(b).sort(), Object.keys(a).sort(), 'same paths')
  tt.same(b, a, `same ${Object.keys(a).length} nodes`)
  const extra = await readdir(join(dir, 'b'))
  tt.ok(extra.includes('stargz.index.json'), 'output has the TOC entry')
  return a
}

t.test('every entry type, PAX input with xattrs', async (tt) => {
  const a = await roundTrip(tt, everyTypeNodes(), { xattrs: true })
  // Guard against a vacuous comparison: the tree really has what we claim to compare.
  tt.same(a['xattr/binary']?.xattrs, { 'user.bin': Buffer.from([0, 0xff, 0x10, 0x80]).toString('base64') }, 'binary xattr on disk')
  tt.ok(a['xattr']?.xattrs?.['user.dirattr'], 'dir xattr on disk')
  tt.same(a['dev/bigdev']?.rdev, [300, 70000], 'device numbers')
  tt.equal(a['owners/bigid']?.uid, 3_000_000, 'big uid')
  tt.equal(a['bin/suid']?.mode, 0o4755, 'setuid bit')
  tt.equal(a['tmp']?.mode, 0o1777, 'sticky bit')
  tt.equal(a['times/fraction']?.mtimeNs, '1234567890500000000', 'fractional mtime')
  tt.same(a['etc/hosts']?.links, ['etc/hosts', 'etc/hosts.hard'], 'hardlink identity')
  tt.equal(a['run/fifo']?.type, 'fifo')
  tt.equal(a['opaque/.wh..wh..opq']?.type, 'file', 'opaque whiteout')
})

t.test('every entry type, GNU format input (long names via L/K records)', async (tt) => {
  await roundTrip(tt, everyTypeNodes().filter((n) => !n.path.startsWith('owners/bigid')), { format: 'gnu' })
})

t.test('many small files and a 20 MB file in 1 MiB chunks, gzip input, prioritized files', async (tt) => {
  const nodes: NodeSpec[] = [
    ...manySmallFilesNodes(2000),
    { type: 'file', path: 'big/blob.bin', content: patternBytes(20 * 1024 * 1024 + 12345, 42), mode: 0o644, mtime: 1_700_000_000 },
    { type: 'file', path: 'big/exact', content: patternBytes(1024 * 1024, 7), mode: 0o644 },
  ]
  await roundTrip(tt, nodes, {
    gzipInput: true,
    convert: { chunkSize: 1024 * 1024, prioritizedFiles: ['big/blob.bin', '/small/d3/f3', './small/d5/f1000', 'not/there'] },
  })
})

t.test('busybox rootfs', async (tt) => {
  const dir = await tempDir(tt)
  const root = join(dir, 'root')
  await mkdir(join(root, 'bin'), { recursive: true })
  await copyFile('/bin/busybox', join(root, 'bin/busybox'))
  await sh(join(root, 'bin/busybox'), ['--install', '-s', join(root, 'bin')])
  await writeFile(join(root, 'bin', 'marker'), 'x')
  const links = await readdir(join(root, 'bin'))
  tt.ok(links.length > 100, `busybox installed ${links.length} applet links`)
  const input = join(dir, 'rootfs.tar')
  await createTar(root, input)
  const out = join(dir, 'rootfs.esgz')
  const res = await convertFile(input, out)
  tt.match(res.digest, /^sha256:[0-9a-f]{64}$/)
  await extractTar(input, join(dir, 'a'))
  await extractTar(out, join(dir, 'b'))
  tt.same(await snapshotTree(join(dir, 'b'), ESTARGZ_EXTRA_FILES), await snapshotTree(join(dir, 'a')))
  const { stdout } = await sh(join(dir, 'b', 'bin', 'busybox'), ['echo', 'hello from the converted rootfs'])
  tt.equal(stdout.trim(), 'hello from the converted rootfs', 'extracted busybox runs')
})
