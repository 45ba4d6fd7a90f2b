/**
 * The FUSE lowlevel operations of one read-only layer over a LayerTree and a Layer: the same
 * answers as src/fuse/layer-ops.ts gives libfuse (attributes, whiteouts as 0/0 char devices,
 * opaque-directory xattrs, the state dir), but addressed by node id instead of by path.
 *
 * Identities are deterministic so that a new process, built from the same TOC, can serve a
 * connection an earlier process initialised:
 * - nodeid = the tree's inode number (primary slot + 1; the root is 1). The state dir and its
 *   file are maxIno + 1 and + 2.
 * - fh = the inode number too: nothing is allocated per open, nothing to lose on a crash.
 * - FORGET / BATCH_FORGET are no-ops: the tree is immutable, there is no per-lookup state.
 */
import { constants } from 'node:os'
import type { Logger } from 'pino'
import type { Layer } from '../layer/types.js'
import { BLOCK_SIZE, S_IFDIR, S_IFMT, S_IFREG, blocksFor } from '../fuse/attr.js'
import { EIO, EISDIR, ENODATA, ENOENT, ENOTDIR, EROFS, ERANGE, EINVAL, toErrno } from '../fuse/errno.js'
import type { LayerTree } from '../fuse/inode-table.js'
import type { LayerOpsStats } from '../fuse/layer-ops.js'
import { STATE_DIR, STATE_FILE_SIZE, renderState, stateFileName } from '../fuse/state-file.js'
import { OPAQUE_USER_XATTR, OPAQUE_VALUE, OPAQUE_XATTR } from '../fuse/whiteout.js'
import type { FuseConnection, FuseHandler } from './connection.js'
import {
  FOPEN_CACHE_DIR, FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE, FUSE_ROOT_ID, IN_HEADER_SIZE, MUTATING, NO_REPLY, Op,
  direntSize, encodeAttrOut, encodeEntryOut, encodeGetxattrOut, encodeOpenOut, encodeStatfsOut, parseReadIn,
  parseU32Arg, readCString, writeDirent, type Attr, type InHeader,
} from './wire.js'

const ENOSYS = -constants.errno.ENOSYS
const DOT = Buffer.from('.')
const DOTDOT = Buffer.from('..')
const O_ACCMODE = 3
const O_RDONLY = 0
const O_TRUNC = 0o1000
const W_OK = 2

export interface LayerServerOptions {
  /** Seconds the kernel may cache attributes and name lookups (found or not). */
  attrTimeoutSec: number
  entryTimeoutSec: number
  opaqueXattrs?: ReadonlyArray<'trusted' | 'user'>
  /** Serve getxattr/listxattr even when the layer has none (default false). */
  serveXattrs?: boolean
  /** Metrics hook: each op's name and its duration until its reply, in seconds. */
  onOp?: (op: string, seconds: number) => void
}

const OP_NAMES: Record<number, string> = {
  [Op.LOOKUP]: 'lookup', [Op.GETATTR]: 'getattr', [Op.READLINK]: 'readlink', [Op.OPEN]: 'open', [Op.READ]: 'read',
  [Op.RELEASE]: 'release', [Op.OPENDIR]: 'opendir', [Op.READDIR]: 'readdir', [Op.RELEASEDIR]: 'releasedir',
  [Op.GETXATTR]: 'getxattr', [Op.LISTXATTR]: 'listxattr', [Op.STATFS]: 'statfs', [Op.ACCESS]: 'access', [Op.FLUSH]: 'flush',
}

export class LayerServer implements FuseHandler {
  readonly stats: LayerOpsStats = { opens: 0, reads: 0, bytesRead: 0, readErrors: 0 }
  private readonly stateDirIno: number
  private readonly stateFileIno: number
  private readonly stateFileName: Buffer
  private readonly opaqueNames: string[]
  private lastError: string | undefined
  private readonly xattrs: boolean

  constructor(private readonly layer: Layer, private readonly tree: LayerTree, private readonly log: Logger, private readonly o: LayerServerOptions) {
    this.stateDirIno = tree.maxIno + 1
    this.stateFileIno = tree.maxIno + 2
    this.stateFileName = Buffer.from(stateFileName(layer.digest))
    this.xattrs = tree.anyXattrs || o.serveXattrs === true
    this.opaqueNames = (o.opaqueXattrs ?? ['trusted']).map((k) => (k === 'user' ? OPAQUE_USER_XATTR : OPAQUE_XATTR))
  }

  dispatch(h: InHeader, buf: Buffer, conn: FuseConnection): void {
    if (NO_REPLY.has(h.opcode)) return // FORGET, BATCH_FORGET: nothing kept per lookup; INTERRUPT: reads finish anyway
    const onOp = this.o.onOp
    if (onOp === undefined || OP_NAMES[h.opcode] === undefined) return this.serve(h, buf, conn)
    const t0 = performance.now()
    const name = OP_NAMES[h.opcode] as string
    const timed = { reply: (hh: InHeader, err: number, ...p: Buffer[]) => { onOp(name, (performance.now() - t0) / 1000); conn.reply(hh, err, ...p) } }
    this.serve(h, buf, timed)
  }

  private serve(h: InHeader, buf: Buffer, conn: Pick<FuseConnection, 'reply'>): void {
    try {
      switch (h.opcode) {
        case Op.LOOKUP: return this.lookup(h, readCString(buf, IN_HEADER_SIZE), conn)
        case Op.GETATTR: {
          const a = this.attrOf(h.nodeid)
          if (a === undefined) return conn.reply(h, ENOENT)
          return conn.reply(h, 0, encodeAttrOut(this.attrValid(h.nodeid), a))
        }
        case Op.READLINK: {
          const s = this.slotOf(h.nodeid)
          const target = s < 0 ? undefined : this.tree.linkTarget(s)
          if (target === undefined) return conn.reply(h, s < 0 ? ENOENT : EINVAL)
          return conn.reply(h, 0, Buffer.from(target))
        }
        case Op.OPEN: return this.open(h, parseU32Arg(buf), conn)
        case Op.READ: return this.read(h, buf, conn)
        case Op.OPENDIR: {
          if (h.nodeid === this.stateDirIno) return conn.reply(h, 0, encodeOpenOut(h.nodeid, 0))
          const s = this.slotOf(h.nodeid)
          if (s < 0) return conn.reply(h, ENOENT)
          if (!this.tree.isDir(s)) return conn.reply(h, ENOTDIR)
          // The listing never changes: let the kernel keep it in its page cache.
          return conn.reply(h, 0, encodeOpenOut(h.nodeid, FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR))
        }
        case Op.READDIR: return this.readdir(h, buf, conn)
        case Op.RELEASE: case Op.RELEASEDIR: case Op.FLUSH: return conn.reply(h, 0)
        // A layer with no xattrs and no opaque dirs: ENOSYS once, and the kernel stops asking on
        // this connection (it answers EOPNOTSUPP itself) — what fuse-native does with the ops left out.
        case Op.GETXATTR: return this.xattrs ? this.getxattr(h, buf, conn) : conn.reply(h, ENOSYS)
        case Op.LISTXATTR: return this.xattrs ? this.listxattr(h, buf, conn) : conn.reply(h, ENOSYS)
        case Op.STATFS:
          return conn.reply(h, 0, encodeStatfsOut({ blocks: 0, bfree: 0, bavail: 0, files: this.tree.count, ffree: 0, bsize: BLOCK_SIZE, namelen: 255, frsize: BLOCK_SIZE }))
        case Op.ACCESS: {
          if (this.attrOf(h.nodeid) === undefined) return conn.reply(h, ENOENT)
          return conn.reply(h, (parseU32Arg(buf) & W_OK) !== 0 ? EROFS : 0)
        }
        default:
          return conn.reply(h, MUTATING.has(h.opcode) ? EROFS : ENOSYS)
      }
    } catch (e) {
      this.log.error({ err: e, opcode: h.opcode }, 'fuse-handler-failed')
      conn.reply(h, EIO)
    }
  }

  /** Slot of a tree node id, or -1 (the state nodes, or an id this tree never gave out). */
  private slotOf(nodeid: number): number {
    const s = nodeid - 1
    if (s < 0 || nodeid > this.tree.maxIno || s >= this.tree.count) return -1
    return this.tree.primary(s) === s ? s : -1
  }

  private attrValid(nodeid: number): number {
    // The state file's mtime moves on every getattr; never cache its attributes.
    return nodeid === this.stateFileIno ? 0 : this.o.attrTimeoutSec
  }

  private treeAttr(s: number): Attr {
    const size = this.tree.size(s)
    return {
      ino: this.tree.ino(s), size, blocks: blocksFor(size), mtimeMs: this.tree.mtimeMs(s), mode: this.tree.mode(s),
      nlink: this.tree.nlink(s), uid: this.tree.uid(s), gid: this.tree.gid(s), rdev: this.tree.rdev(s), blksize: BLOCK_SIZE,
    }
  }

  private attrOf(nodeid: number): Attr | undefined {
    if (nodeid === this.stateDirIno) return { ino: nodeid, size: 0, blocks: 0, mtimeMs: 0, mode: S_IFDIR | 0o500, nlink: 2, uid: 0, gid: 0, rdev: 0, blksize: BLOCK_SIZE }
    if (nodeid === this.stateFileIno) {
      return { ino: nodeid, size: STATE_FILE_SIZE, blocks: blocksFor(STATE_FILE_SIZE), mtimeMs: Date.now(), mode: S_IFREG | 0o400, nlink: 1, uid: 0, gid: 0, rdev: 0, blksize: BLOCK_SIZE }
    }
    const s = this.slotOf(nodeid)
    return s < 0 ? undefined : this.treeAttr(s)
  }

  private lookup(h: InHeader, name: string, conn: Pick<FuseConnection, 'reply'>): void {
    let found: number | undefined
    if (h.nodeid === this.stateDirIno) {
      if (name === this.stateFileName.toString()) found = this.stateFileIno
    } else {
      const p = this.slotOf(h.nodeid)
      if (p < 0) return conn.reply(h, ENOENT)
      if (!this.tree.isDir(p)) return conn.reply(h, ENOTDIR)
      const dir = this.tree.path(p)
      const s = this.tree.lookup(dir === '' ? name : `${dir}/${name}`)
      if (s >= 0) found = this.tree.ino(s)
      else if (h.nodeid === FUSE_ROOT_ID && name === STATE_DIR) found = this.stateDirIno
    }
    if (found === undefined) {
      // A negative entry, cached like a positive one (negative_timeout): the tree never changes.
      return conn.reply(h, 0, encodeEntryOut(0, this.o.entryTimeoutSec, 0, undefined))
    }
    conn.reply(h, 0, encodeEntryOut(found, found === this.stateFileIno ? 0 : this.o.entryTimeoutSec, this.attrValid(found), this.attrOf(found) as Attr))
  }

  private open(h: InHeader, flags: number, conn: Pick<FuseConnection, 'reply'>): void {
    if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) return conn.reply(h, EROFS)
    // The state file is rendered fresh on every read: no page cache.
    if (h.nodeid === this.stateFileIno) return conn.reply(h, 0, encodeOpenOut(h.nodeid, FOPEN_DIRECT_IO))
    if (h.nodeid === this.stateDirIno) return conn.reply(h, EISDIR)
    const s = this.slotOf(h.nodeid)
    if (s < 0) return conn.reply(h, ENOENT)
    if (this.tree.isDir(s)) return conn.reply(h, EISDIR)
    this.stats.opens++
    if (this.layer.noteAccess && this.tree.isRegular(s) && !this.tree.isWhiteout(s)) {
      const e = this.layer.index.entries.get(this.tree.tocName(s))
      if (e) {
        try { this.layer.noteAccess(e) } catch (err) { this.log.warn({ err, path: this.tree.path(s) }, 'first-access-hook-failed') }
      }
    }
    // Layer files never change: their pages stay cached across opens (what auto_cache gave).
    conn.reply(h, 0, encodeOpenOut(h.nodeid, FOPEN_KEEP_CACHE))
  }

  private read(h: InHeader, buf: Buffer, conn: Pick<FuseConnection, 'reply'>): void {
    const { fh, offset, size: len } = parseReadIn(buf)
    if (fh === this.stateFileIno) {
      const data = renderState(this.layer.state(), this.lastError)
      return conn.reply(h, 0, offset >= data.length ? Buffer.alloc(0) : data.subarray(offset, Math.min(data.length, offset + len)))
    }
    const s = this.slotOf(fh)
    if (s < 0) return conn.reply(h, ENOENT)
    if (!this.tree.isRegular(s) || this.tree.isWhiteout(s)) return conn.reply(h, EISDIR)
    const size = this.tree.size(s)
    if (offset >= size || len === 0) return conn.reply(h, 0)
    const want = Math.min(len, size - offset)
    const name = this.tree.tocName(s)
    this.stats.reads++
    this.layer.read(name, offset, want).then((data) => {
      const out = data.length > want ? data.subarray(0, want) : data
      this.stats.bytesRead += out.length
      conn.reply(h, 0, out)
    }, (err: unknown) => {
      this.stats.readErrors++
      const errno = toErrno(err)
      this.lastError = `read of ${JSON.stringify(name)} at offset ${offset} failed: ${(err as Error)?.message ?? String(err)}`
      this.log.error({ err, digest: this.layer.digest, path: name, offset, length: want, errno }, 'read-failed')
      conn.reply(h, errno === 0 ? EIO : errno)
    })
  }

  private readdir(h: InHeader, buf: Buffer, conn: Pick<FuseConnection, 'reply'>): void {
    const { offset, size } = parseReadIn(buf)
    // Entries in a fixed order ('.', '..', then the children); an entry's cookie is its index + 1.
    let total: number
    let entry: (idx: number) => [number, number, Buffer]
    if (h.nodeid === this.stateDirIno) {
      const fixed: Array<[number, number, Buffer]> = [[this.stateDirIno, S_IFDIR, DOT], [FUSE_ROOT_ID, S_IFDIR, DOTDOT], [this.stateFileIno, S_IFREG, this.stateFileName]]
      total = fixed.length
      entry = (idx) => fixed[idx] as [number, number, Buffer]
    } else {
      const s = this.slotOf(h.nodeid)
      if (s < 0) return conn.reply(h, ENOENT)
      if (!this.tree.isDir(s)) return conn.reply(h, ENOTDIR)
      const kids = this.tree.children(s)
      const parentIno = this.tree.ino(this.tree.parent(s))
      total = kids.length + 2
      entry = (idx) => {
        if (idx === 0) return [h.nodeid, S_IFDIR, DOT]
        if (idx === 1) return [parentIno, S_IFDIR, DOTDOT]
        const k = kids[idx - 2] as number
        return [this.tree.ino(k), this.tree.mode(k) & S_IFMT, Buffer.from(this.tree.baseName(k))]
      }
    }
    const out = Buffer.allocUnsafe(size)
    let at = 0
    for (let idx = offset; idx < total; idx++) {
      const [ino, type, name] = entry(idx)
      if (at + direntSize(name.length) > size) break
      at = writeDirent(out, at, ino, idx + 1, type >>> 12, name)
    }
    conn.reply(h, 0, out.subarray(0, at))
  }

  /** size 0 asks for the length; a value longer than `size` is ERANGE. */
  private sized(h: InHeader, value: Buffer, size: number, conn: Pick<FuseConnection, 'reply'>): void {
    if (size === 0) return conn.reply(h, 0, encodeGetxattrOut(value.length))
    if (value.length > size) return conn.reply(h, ERANGE)
    conn.reply(h, 0, value)
  }

  private getxattr(h: InHeader, buf: Buffer, conn: Pick<FuseConnection, 'reply'>): void {
    const size = parseU32Arg(buf)
    const name = readCString(buf, IN_HEADER_SIZE + 8)
    const s = this.slotOf(h.nodeid)
    if (s < 0) return conn.reply(h, this.attrOf(h.nodeid) === undefined ? ENOENT : ENODATA)
    if (this.tree.isOpaque(s) && this.opaqueNames.includes(name)) return this.sized(h, OPAQUE_VALUE, size, conn)
    const v = this.tree.xattr(s, name)
    if (v === undefined) return conn.reply(h, ENODATA)
    this.sized(h, v, size, conn)
  }

  private listxattr(h: InHeader, buf: Buffer, conn: Pick<FuseConnection, 'reply'>): void {
    const size = parseU32Arg(buf)
    const s = this.slotOf(h.nodeid)
    if (s < 0 && this.attrOf(h.nodeid) === undefined) return conn.reply(h, ENOENT)
    const names: string[] = []
    if (s >= 0) {
      if (this.tree.isOpaque(s)) names.push(...this.opaqueNames)
      for (const [k] of this.tree.xattrs(s)) names.push(k)
    }
    this.sized(h, Buffer.from(names.map((n) => `${n}\0`).join('')), size, conn)
  }
}
