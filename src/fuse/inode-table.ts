/**
 * The directory tree one layer mount serves, in parallel typed arrays so 100k+ entries cost a
 * few dozen bytes each and no per-entry objects (the TocIndex already holds the TOC entries).
 *
 * A "slot" is one name in the tree (a dentry). Slots are numbered in the sort order of their
 * full paths, so a path lookup is a binary search over `paths`, which holds references to the
 * TOC's own name strings (nothing is copied, except the presented names of whiteouts).
 * Slot 0 is the root ('').
 *
 * Hardlinks are slots whose `primary` is their target's slot: attributes live on the primary
 * only, and the inode number of a slot is `primary + 1` (so the root is inode 1, FUSE_ROOT_ID),
 * which makes every name of one file show the same st_ino with st_nlink = number of names.
 * Directories have nlink = 2 + number of subdirectories.
 *
 * Per slot: paths (8-byte reference), parent, primary, mode, uid, gid, rdev, nlink, child
 * offsets, child list (4 bytes each), size and mtime (8 each), flags (1): ~65 bytes.
 */
import type { TocEntry } from '../estargz/types.js'
import { S_IFCHR, S_IFDIR, S_IFMT, S_IFREG, makedev, modeOf, modtimeMs, sizeOf } from './attr.js'
import { WHITEOUT_PREFIX, classifyName } from './whiteout.js'

export const ROOT_SLOT = 0
export const ROOT_INO = 1

export const FLAG_WHITEOUT = 1
export const FLAG_OPAQUE = 2
export const FLAG_XATTRS = 4

function splitName(name: string): [string, string] {
  const i = name.lastIndexOf('/')
  return i < 0 ? ['', name] : [name.slice(0, i), name.slice(i + 1)]
}

/** Date.parse is slow; TOCs repeat the same few modtimes, often back to back. */
function memoModtime(): (e: TocEntry) => number {
  const cache = new Map<string, number>()
  return (e) => {
    const m = e.modtime
    if (m === undefined) return 0
    let v = cache.get(m)
    if (v === undefined) {
      v = modtimeMs(e)
      if (cache.size > 4096) cache.clear()
      cache.set(m, v)
    }
    return v
  }
}

function sortedIndexOf(sorted: readonly string[], key: string, hi = sorted.length - 1): number {
  let lo = 0
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const v = sorted[mid] as string
    if (v < key) lo = mid + 1
    else if (v > key) hi = mid - 1
    else return mid
  }
  return -1
}

/**
 * What the FUSE ops read of a layer's tree. Two implementations answer it identically (checked
 * by test/index/compact-index.test.ts): this InodeTable over the TocIndex's objects, and the
 * compact single-buffer index of src/index/ that can be persisted and re-opened in place.
 */
export interface LayerTree {
  readonly count: number
  readonly maxIno: number
  /** Some slot has xattrs or is an opaque directory; if none does, getxattr need not be served. */
  readonly anyXattrs: boolean
  lookup(path: string): number
  lookupFusePath(fusePath: string): number
  path(s: number): string
  baseName(s: number): string
  parent(s: number): number
  primary(s: number): number
  ino(s: number): number
  mode(s: number): number
  uid(s: number): number
  gid(s: number): number
  rdev(s: number): number
  nlink(s: number): number
  size(s: number): number
  mtimeMs(s: number): number
  isDir(s: number): boolean
  isRegular(s: number): boolean
  isWhiteout(s: number): boolean
  isOpaque(s: number): boolean
  hasXattrs(s: number): boolean
  tocName(s: number): string
  children(s: number): Uint32Array
  /** Symlink target, or undefined for anything else. */
  linkTarget(s: number): string | undefined
  /** The slot's own xattrs (names and raw values), in TOC order; opaque markers not included. */
  xattrs(s: number): Array<[string, Buffer]>
  xattr(s: number, name: string): Buffer | undefined
  /** Bytes the tree's own arrays hold. */
  arrayBytes(): number
}

/**
 * What InodeTable.build reads: the entries by cleaned name (implied directories included, as
 * TocIndex keeps them) and hardlink resolution. TocIndex is one; the streaming index builder
 * (src/index/toc-columns.ts) is the other, making entries on demand from its columns.
 */
export interface TreeSource {
  readonly entries: ReadonlyMap<string, TocEntry>
  resolve(name: string): TocEntry | undefined
}

export class InodeTable implements LayerTree {
  /** Number of slots (names, the root included). */
  readonly count: number
  /** Highest inode number in use; synthetic inodes (state dir/file) go above it. */
  readonly maxIno: number
  readonly anyXattrs: boolean
  private constructor(
    private readonly index: TreeSource,
    private readonly paths: string[],
    private readonly parents: Uint32Array,
    private readonly primaries: Uint32Array,
    private readonly modes: Uint32Array,
    private readonly uids: Uint32Array,
    private readonly gids: Uint32Array,
    private readonly rdevs: Uint32Array,
    private readonly nlinks: Uint32Array,
    private readonly sizes: Float64Array,
    private readonly mtimes: Float64Array,
    private readonly flags: Uint8Array,
    private readonly childStart: Uint32Array,
    private readonly childList: Uint32Array,
  ) {
    this.count = paths.length
    this.maxIno = paths.length
    this.anyXattrs = flags.some((f) => (f & (FLAG_XATTRS | FLAG_OPAQUE)) !== 0)
  }

  static build(index: TreeSource): InodeTable {
    // 1. Presented names: whiteouts renamed, bookkeeping and opaque markers dropped. The common
    //    case (no ".wh." prefix, not at the root) allocates nothing.
    const names: string[] = []
    const whiteouts = new Map<string, TocEntry>()
    const opaque = new Set<string>()
    for (const [name, e] of index.entries) {
      const slash = name.lastIndexOf('/')
      if (slash >= 0 && !name.startsWith(WHITEOUT_PREFIX, slash + 1)) { names.push(name); continue }
      if (name === '') { names.push(name); continue }
      const dir = slash < 0 ? '' : name.slice(0, slash)
      const c = classifyName(dir, name.slice(slash + 1))
      if (c.kind === 'plain') names.push(name)
      else if (c.kind === 'opaque') opaque.add(dir)
      else if (c.kind === 'whiteout') {
        const target = dir === '' ? c.target : `${dir}/${c.target}`
        // A layer carrying both NAME and .wh.NAME is malformed; the real entry wins.
        if (index.entries.has(target) || whiteouts.has(target)) continue
        whiteouts.set(target, e)
        names.push(target)
      }
    }
    // Default sort compares UTF-16 code units, exactly like `<` in the binary search.
    const sorted = names.sort()
    const entryAt = (name: string): TocEntry | undefined => whiteouts.get(name) ?? index.entries.get(name)

    // 2. Keep a name only if its parent is a kept directory. Parents sort before their children,
    //    and runs of siblings share the parent found last, so most lookups are a prefix check.
    const n0 = sorted.length
    const parent0 = new Int32Array(n0).fill(-1)
    const keep = new Uint8Array(n0)
    const dirSlot = new Map<string, number>()
    let kept = 0
    let lastParent = ''
    let lastParentIdx = -1
    for (let i = 0; i < n0; i++) {
      const name = sorted[i] as string
      const e = entryAt(name)
      if (name === '') {
        keep[i] = 1; kept++
        dirSlot.set('', i)
        continue
      }
      const slash = name.lastIndexOf('/')
      let p: number
      if (lastParentIdx >= 0 && slash === lastParent.length && name.startsWith(lastParent)) p = lastParentIdx
      else {
        const pn = slash < 0 ? '' : name.slice(0, slash)
        p = dirSlot.get(pn) ?? -1
        lastParent = pn
        lastParentIdx = p
      }
      parent0[i] = p
      if (p < 0 || keep[p] !== 1 || e === undefined) continue
      keep[i] = 1
      kept++
      if (e.type === 'dir' && !whiteouts.has(name)) dirSlot.set(name, i)
    }
    const remap = new Int32Array(n0).fill(-1)
    const paths: string[] = []
    for (let i = 0; i < n0; i++) if (keep[i] === 1) { remap[i] = paths.length; paths.push(sorted[i] as string) }

    // 3. Attributes.
    const n = kept
    const parents = new Uint32Array(n)
    const primaries = new Uint32Array(n)
    const modes = new Uint32Array(n)
    const uids = new Uint32Array(n)
    const gids = new Uint32Array(n)
    const rdevs = new Uint32Array(n)
    const nlinks = new Uint32Array(n)
    const sizes = new Float64Array(n)
    const mtimes = new Float64Array(n)
    const flags = new Uint8Array(n)
    const childCount = new Uint32Array(n + 1)
    const mtimeOf = memoModtime()
    for (let i = 0; i < n0; i++) {
      const s = remap[i] as number
      if (s < 0) continue
      const path = paths[s] as string
      const e = entryAt(path) as TocEntry
      parents[s] = s === 0 ? 0 : (remap[parent0[i] as number] as number)
      if (s !== 0) childCount[parents[s] as number]++
      primaries[s] = s
      if (whiteouts.size > 0 && whiteouts.has(path)) {
        modes[s] = S_IFCHR
        mtimes[s] = mtimeOf(e)
        flags[s] = FLAG_WHITEOUT
        continue
      }
      let target = e
      if (e.type === 'hardlink') {
        const t = index.resolve(path)
        const ok = t !== undefined && t.type !== 'hardlink' && t.type !== 'dir'
        const ts = ok ? sortedIndexOf(paths, t.name) : -1
        if (ts >= 0) { primaries[s] = ts; continue }
        target = ok ? t : { ...e, type: 'reg', size: 0 }
      }
      modes[s] = modeOf(target)
      uids[s] = target.uid ?? 0
      gids[s] = target.gid ?? 0
      sizes[s] = sizeOf(target)
      mtimes[s] = mtimeOf(target)
      if (target.type === 'char' || target.type === 'block') rdevs[s] = makedev(target.devMajor ?? 0, target.devMinor ?? 0)
      let f = 0
      if (target.xattrs !== undefined && Object.keys(target.xattrs).length > 0) f |= FLAG_XATTRS
      if (target.type === 'dir' && opaque.size > 0 && opaque.has(path)) f |= FLAG_OPAQUE
      flags[s] = f
    }
    // Link counts: names per inode; directories 2 + subdirectories.
    for (let s = 0; s < n; s++) {
      if (((modes[primaries[s] as number] as number) & S_IFMT) === S_IFDIR) {
        nlinks[s] = (nlinks[s] as number) + 2
        if (s !== 0) nlinks[parents[s] as number] = (nlinks[parents[s] as number] as number) + 1
      } else {
        nlinks[primaries[s] as number] = (nlinks[primaries[s] as number] as number) + 1
      }
    }
    // Children, compressed-row style; slots are visited in path order so lists come out sorted.
    const childStart = new Uint32Array(n + 1)
    for (let s = 0; s < n; s++) childStart[s + 1] = (childStart[s] as number) + (childCount[s] as number)
    const fill = childStart.slice(0, n)
    const childList = new Uint32Array(Math.max(0, n - 1))
    for (let s = 1; s < n; s++) {
      const p = parents[s] as number
      childList[fill[p] as number] = s
      fill[p] = (fill[p] as number) + 1
    }
    return new InodeTable(index, paths, parents, primaries, modes, uids, gids, rdevs, nlinks, sizes, mtimes, flags, childStart, childList)
  }

  /** Slot of a path relative to the root ('' is the root, 'a/b' no leading slash), or -1. */
  lookup(path: string): number {
    return sortedIndexOf(this.paths, path)
  }

  /** Slot of a FUSE path ('/', '/a/b'), or -1. */
  lookupFusePath(fusePath: string): number {
    return sortedIndexOf(this.paths, fusePath.length <= 1 ? '' : fusePath.slice(1))
  }

  path(s: number): string { return this.paths[s] as string }
  baseName(s: number): string { return splitName(this.paths[s] as string)[1] }
  parent(s: number): number { return this.parents[s] as number }
  /** The slot holding the attributes (hardlinks → their target). */
  primary(s: number): number { return this.primaries[s] as number }
  ino(s: number): number { return (this.primaries[s] as number) + 1 }
  mode(s: number): number { return this.modes[this.primaries[s] as number] as number }
  uid(s: number): number { return this.uids[this.primaries[s] as number] as number }
  gid(s: number): number { return this.gids[this.primaries[s] as number] as number }
  rdev(s: number): number { return this.rdevs[this.primaries[s] as number] as number }
  nlink(s: number): number { return this.nlinks[this.primaries[s] as number] as number }
  size(s: number): number { return this.sizes[this.primaries[s] as number] as number }
  mtimeMs(s: number): number { return this.mtimes[this.primaries[s] as number] as number }
  isDir(s: number): boolean { return (this.mode(s) & S_IFMT) === S_IFDIR }
  isRegular(s: number): boolean { return (this.mode(s) & S_IFMT) === S_IFREG }
  isWhiteout(s: number): boolean { return ((this.flags[s] as number) & FLAG_WHITEOUT) !== 0 }
  isOpaque(s: number): boolean { return ((this.flags[this.primaries[s] as number] as number) & FLAG_OPAQUE) !== 0 }
  hasXattrs(s: number): boolean { return ((this.flags[this.primaries[s] as number] as number) & FLAG_XATTRS) !== 0 }
  /** TOC name whose payload / xattrs / link target this slot shows (hardlinks resolved). */
  tocName(s: number): string { return this.paths[this.primaries[s] as number] as string }

  private entry(s: number): TocEntry | undefined {
    return this.isWhiteout(s) ? undefined : this.index.entries.get(this.tocName(s))
  }

  linkTarget(s: number): string | undefined {
    const e = this.entry(s)
    return e?.type === 'symlink' ? (e.linkName ?? '') : undefined
  }

  xattrs(s: number): Array<[string, Buffer]> {
    if (!this.hasXattrs(s)) return []
    return Object.entries(this.entry(s)?.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])
  }

  xattr(s: number, name: string): Buffer | undefined {
    if (!this.hasXattrs(s)) return undefined
    const v = this.entry(s)?.xattrs?.[name]
    return v === undefined ? undefined : Buffer.from(v, 'base64')
  }

  children(s: number): Uint32Array {
    return this.childList.subarray(this.childStart[s] as number, this.childStart[s + 1] as number)
  }

  /** Bytes held by this table's own arrays (not counting the shared name strings). */
  arrayBytes(): number {
    const typed = [this.parents, this.primaries, this.modes, this.uids, this.gids, this.rdevs, this.nlinks, this.sizes,
      this.mtimes, this.flags, this.childStart, this.childList]
    return typed.reduce((a, t) => a + t.byteLength, 0) + this.paths.length * 8
  }
}
