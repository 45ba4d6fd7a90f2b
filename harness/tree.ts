/**
 * Test trees: build directory trees with every entry type, turn them into tars with GNU tar,
 * extract tars, and snapshot trees for comparison (types, modes, owners, sizes, mtimes, link
 * targets, hardlink identity, device numbers, xattrs, content digests).
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { chmod, chown, lchown, link, lstat, lutimes, mkdir, mkdtemp, readdir, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { emptyHeader } from '../src/tar/header.js'
import { readTar } from '../src/tar/reader.js'
import { encodeHeader, endOfArchive, paddingFor } from '../src/tar/writer.js'

const execFileP = promisify(execFile)

export interface Teardownable { teardown(fn: () => unknown): void }

export async function tempDir(t: Teardownable, prefix = 'stargz-test-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(() => rm(d, { recursive: true, force: true }))
  return d
}

export async function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<{ stdout: string; stderr: string }> {
  return execFileP(cmd, args, { maxBuffer: 256 << 20, ...opts })
}

interface Common { path: string; mode?: number; uid?: number; gid?: number; mtime?: number }
export type NodeSpec =
  | (Common & { type: 'dir' })
  | (Common & { type: 'file'; content: Buffer | string })
  | (Common & { type: 'symlink'; target: string })
  | (Common & { type: 'hardlink'; target: string })
  | (Common & { type: 'char' | 'block'; major: number; minor: number })
  | (Common & { type: 'fifo' })

/** Creates the nodes under `root` (parents as needed), then applies owners, modes and mtimes. */
export async function writeTree(root: string, nodes: NodeSpec[]): Promise<void> {
  for (const n of nodes) {
    const p = join(root, n.path)
    await mkdir(dirname(p), { recursive: true })
    switch (n.type) {
      case 'dir': await mkdir(p, { recursive: true }); break
      case 'file': await writeFile(p, n.content); break
      case 'symlink': await symlink(n.target, p); break
      case 'hardlink': await link(join(root, n.target), p); break
      case 'char': case 'block': await sh('mknod', [p, n.type === 'char' ? 'c' : 'b', String(n.major), String(n.minor)]); break
      case 'fifo': await sh('mkfifo', [p]); break
    }
  }
  // Owners and modes first, then mtimes deepest-first so creating children does not touch them.
  for (const n of nodes) {
    const p = join(root, n.path)
    if (n.type === 'symlink') {
      if (n.uid !== undefined) await lchown(p, n.uid, n.gid ?? 0)
      continue
    }
    if (n.uid !== undefined) await chown(p, n.uid, n.gid ?? 0)
    if (n.mode !== undefined) await chmod(p, n.mode)
  }
  const byDepth = [...nodes].sort((a, b) => b.path.split('/').length - a.path.split('/').length)
  for (const n of byDepth) {
    if (n.mtime === undefined) continue
    const p = join(root, n.path)
    if (n.type === 'symlink') await lutimes(p, n.mtime, n.mtime)
    else await utimes(p, n.mtime, n.mtime)
  }
}

/** Deterministic pseudo-random bytes (half compressible) so trees are reproducible. */
export function patternBytes(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size)
  let x = (seed * 2654435761) >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    b[i] = (i >> 12) % 2 === 0 ? x & 0xff : 0x41 + (i % 26)
  }
  return b
}

/** Every entry type, whiteouts, long / unicode names, odd owners, modes and mtimes. */
export function everyTypeNodes(): NodeSpec[] {
  const long100 = 'l'.repeat(120)
  const deep = Array.from({ length: 6 }, (_, i) => `segment-${i}-${'x'.repeat(40)}`).join('/') // > 255 bytes
  return [
    { type: 'dir', path: 'etc', mode: 0o755, mtime: 1_600_000_000 },
    { type: 'file', path: 'etc/hosts', content: '127.0.0.1 localhost\n', mode: 0o644, mtime: 1_600_000_001 },
    { type: 'file', path: 'etc/empty', content: '', mode: 0o600, uid: 1000, gid: 1000, mtime: 1_600_000_002 },
    { type: 'file', path: 'bin/suid', content: '#!/bin/sh\n', mode: 0o4755, mtime: 1_600_000_003 },
    { type: 'file', path: 'bin/sgid', content: 'x', mode: 0o2711, mtime: 1_600_000_003 },
    { type: 'dir', path: 'tmp', mode: 0o1777, mtime: 1_600_000_004 },
    { type: 'file', path: 'noperm', content: 'secret', mode: 0o000, mtime: 86_400 },
    { type: 'symlink', path: 'bin/sh-link', target: 'suid', mtime: 1_600_000_005 },
    { type: 'symlink', path: 'dangling', target: '/does/not/exist' },
    { type: 'hardlink', path: 'etc/hosts.hard', target: 'etc/hosts' },
    { type: 'char', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
    { type: 'block', path: 'dev/loop0', major: 7, minor: 0, mode: 0o660 },
    { type: 'char', path: 'dev/bigdev', major: 300, minor: 70000, mode: 0o600 },
    { type: 'fifo', path: 'run/fifo', mode: 0o644 },
    { type: 'file', path: 'etc/.wh.removed', content: '', mode: 0o644 },
    { type: 'dir', path: 'opaque', mode: 0o755 },
    { type: 'file', path: 'opaque/.wh..wh..opq', content: '', mode: 0o644 },
    { type: 'file', path: `long/${long100}`, content: 'name longer than 100 bytes', mode: 0o644 },
    { type: 'file', path: `${deep}/file-at-depth`, content: 'path longer than 255 bytes', mode: 0o644 },
    { type: 'symlink', path: 'long/link-to-long', target: `${deep}/file-at-depth` },
    { type: 'hardlink', path: 'long/hard-to-deep', target: `${deep}/file-at-depth` },
    { type: 'file', path: 'unicode/café-日本語-🙂.txt', content: 'unicode', mode: 0o644 },
    { type: 'dir', path: 'unicode/Ünïcödé-dir', mode: 0o750 },
    { type: 'file', path: 'owners/bigid', content: 'uid beyond octal', uid: 3_000_000, gid: 4_000_000, mode: 0o640 },
    { type: 'file', path: 'owners/nobody', content: 'n', uid: 65534, gid: 65534 },
    { type: 'file', path: 'times/future', content: 'f', mtime: 4_102_444_800 },
    { type: 'file', path: 'times/fraction', content: 'fr', mtime: 1_234_567_890.5 },
    { type: 'file', path: 'times/old', content: 'o', mtime: 1 },
  ]
}

export function manySmallFilesNodes(count: number): NodeSpec[] {
  const out: NodeSpec[] = []
  for (let i = 0; i < count; i++) {
    out.push({ type: 'file', path: `small/d${i % 17}/f${i}`, content: patternBytes(i % 3000, i), mode: 0o644, mtime: 1_500_000_000 + i })
  }
  return out
}

export interface TreeNodeSnapshot {
  type: string
  mode: number
  uid: number
  gid: number
  size: number
  mtimeNs: string
  target?: string
  rdev?: [number, number]
  sha256?: string
  /** All paths sharing this inode (hardlinks), sorted; only when there is more than one. */
  links?: string[]
  xattrs?: Record<string, string>
}

async function fileDigest(p: string): Promise<string> {
  const h = createHash('sha256')
  for await (const c of createReadStream(p)) h.update(c as Buffer)
  return h.digest('hex')
}

/** Reads all xattrs of a tree by letting GNU tar archive it (no getfattr needed). */
async function treeXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>()
  const { stdout } = await execFileP('tar', ['--xattrs', '--xattrs-include=*', '--format=pax', '--no-recursion', '-C', root, '-cf', '-', ...(await listPaths(root))], { encoding: 'buffer', maxBuffer: 1 << 30 })
  async function* src(): AsyncGenerator<Buffer> { yield stdout }
  for await (const e of readTar(src())) {
    if (e.header.xattrs.size === 0) continue
    const x: Record<string, string> = {}
    for (const [k, v] of [...e.header.xattrs].sort()) x[k] = v.toString('base64')
    out.set(e.header.name.replace(/\/$/, ''), x)
  }
  return out
}

async function listPaths(root: string): Promise<string[]> {
  const out: string[] = []
  async function walk(rel: string): Promise<void> {
    for (const d of (await readdir(join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel === '' ? d.name : `${rel}/${d.name}`
      out.push(r)
      if (d.isDirectory()) await walk(r)
    }
  }
  await walk('')
  return out
}

/** Snapshot of everything `tar -xp` is expected to restore, keyed by relative path ('.' = root). */
export async function snapshotTree(root: string, exclude: string[] = []): Promise<Record<string, TreeNodeSnapshot>> {
  const paths = ['.', ...(await listPaths(root))].filter((p) => !exclude.includes(p))
  const byInode = new Map<string, string[]>()
  const snap: Record<string, TreeNodeSnapshot> = {}
  for (const rel of paths) {
    const p = join(root, rel)
    const st = await lstat(p, { bigint: true })
    const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other'
    const s: TreeNodeSnapshot = {
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'dir' ? 0 : Number(st.size),
      // Directory and symlink mtimes are restored by tar too; compare at full precision.
      mtimeNs: st.mtimeNs.toString(),
    }
    if (type === 'symlink') s.target = await readlink(p)
    if (type === 'char' || type === 'block') {
      const d = st.rdev
      s.rdev = [Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn)), Number((d & 0xffn) | ((d >> 12n) & ~0xffn))]
    }
    if (type === 'file') {
      s.sha256 = await fileDigest(p)
      if (st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`
        const list = byInode.get(key) ?? []
        list.push(rel)
        byInode.set(key, list)
      }
    }
    snap[rel] = s
  }
  for (const list of byInode.values()) {
    if (list.length < 2) continue
    for (const rel of list) (snap[rel] as TreeNodeSnapshot).links = [...list].sort()
  }
  for (const [rel, x] of await treeXattrs(root)) {
    const key = rel === '.' || rel === '' ? '.' : rel.replace(/^\.\//, '')
    if (snap[key]) (snap[key] as TreeNodeSnapshot).xattrs = x
  }
  return snap
}

/**
 * Extracts a tar / tar.gz as root, restoring owners, modes, xattrs. Directory times are set at the
 * end: an eStargz layer lists prioritized files before the rest of their directory, so tar would
 * otherwise restore a directory's mtime and then add entries to it.
 */
export async function extractTar(file: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true })
  await sh('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '--delay-directory-restore', '-xpf', file, '-C', dest])
}

/** Archives `src` with GNU tar in a stable order. */
export async function createTar(src: string, out: string, format: 'pax' | 'gnu' | 'ustar' = 'pax', extra: string[] = []): Promise<void> {
  const args = ['--sort=name', `--format=${format}`, ...extra, '-C', src, '-cf', out, '.']
  if (format === 'pax') args.unshift('--xattrs', '--xattrs-include=*')
  await sh('tar', args)
}

export const ESTARGZ_EXTRA_FILES = ['stargz.index.json', '.no.prefetch.landmark', '.prefetch.landmark']

/**
 * Files and a directory carrying user.* xattrs (text and binary values), as a tar built with our
 * writer: there is no setfattr here, so tests extract it with GNU tar to put xattrs on disk.
 */
export function xattrTar(): Buffer {
  const parts: Buffer[] = []
  const add = (name: string, type: '0' | '5', content: Buffer, xattrs: Record<string, Buffer>, mode: number): void => {
    const h = emptyHeader(name, type)
    h.mode = mode
    h.mtime = 1_650_000_000
    h.size = type === '0' ? content.length : 0
    for (const [k, v] of Object.entries(xattrs)) h.xattrs.set(k, v)
    parts.push(encodeHeader(h), content, Buffer.alloc(paddingFor(h.size)))
  }
  add('xattr/', '5', Buffer.alloc(0), { 'user.dirattr': Buffer.from('on a dir') }, 0o755)
  add('xattr/plain', '0', Buffer.from('plain\n'), { 'user.foo': Buffer.from('bar') }, 0o644)
  add('xattr/binary', '0', Buffer.from('bin'), { 'user.bin': Buffer.from([0, 0xff, 0x10, 0x80]) }, 0o644)
  add('xattr/many', '0', patternBytes(70_000, 9), Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`user.k${i}`, Buffer.from('v'.repeat(i * 50))])), 0o600)
  parts.push(endOfArchive())
  return Buffer.concat(parts)
}

/** Puts the xattrTar() files into `root` (GNU tar restores the xattrs). */
export async function addXattrFiles(root: string): Promise<void> {
  const f = join(root, '..', `xattrs-${Date.now()}-${Math.random().toString(36).slice(2)}.tar`)
  await writeFile(f, xattrTar())
  try {
    await extractTar(f, root)
  } finally {
    await rm(f, { force: true })
  }
}
