/**
 * The FUSE operations of one read-only layer, over an InodeTable and a Layer. fuse-native is
 * path-based (libfuse2 high-level API): every op gets the full path, looked up by binary search.
 * Open file handles are the inode numbers themselves, so nothing is allocated per open.
 *
 * Every handler answers exactly once and never throws: an exception in a handler would
 * otherwise take the whole daemon (and every mount in it) down.
 */
import type { Logger } from 'pino'
import type { TocEntry } from '../estargz/types.js'
import type { Layer } from '../layer/types.js'
import { BLOCK_SIZE, S_IFDIR, S_IFREG, blocksFor } from './attr.js'
import { EIO, EISDIR, ENOENT, ENOTDIR, EROFS, ENODATA, EINVAL, toErrno } from './errno.js'
import type { LayerTree } from './inode-table.js'
import type { FuseOps, NativeStat, NativeStatfs } from './native.js'
import { STATE_DIR, STATE_FILE_SIZE, renderState, stateFileName } from './state-file.js'
import { OPAQUE_USER_XATTR, OPAQUE_VALUE, OPAQUE_XATTR } from './whiteout.js'

const O_ACCMODE = 3
const O_RDONLY = 0
const O_TRUNC = 0o1000
const W_OK = 2

export interface LayerOpsOptions {
  /** Opaque-directory xattrs to serve: 'trusted' (overlayfs default) and/or 'user' (userxattr). */
  opaqueXattrs?: ReadonlyArray<'trusted' | 'user'>
  /** Serve getxattr/listxattr even when the layer has no xattrs (default false: see below). */
  serveXattrs?: boolean
  /** Metrics hook: each op's name and its duration in seconds, measured until its reply. */
  onOp?: (op: string, seconds: number) => void
}

export interface LayerOpsStats {
  opens: number
  reads: number
  bytesRead: number
  readErrors: number
}

export interface LayerOps {
  ops: FuseOps
  stats: LayerOpsStats
}

export function createLayerOps(layer: Layer, table: LayerTree, log: Logger, opts: LayerOpsOptions = {}): LayerOps {
  const stats: LayerOpsStats = { opens: 0, reads: 0, bytesRead: 0, readErrors: 0 }
  const opaqueNames: string[] = (opts.opaqueXattrs ?? ['trusted']).map((k) => (k === 'user' ? OPAQUE_USER_XATTR : OPAQUE_XATTR))
  const stateDirIno = table.maxIno + 1
  const stateFileIno = table.maxIno + 2
  const stateDirPath = `/${STATE_DIR}`
  const stateFilePath = `${stateDirPath}/${stateFileName(layer.digest)}`
  let lastError: string | undefined

  const entryOf = (s: number): TocEntry | undefined => layer.index.entry(table.tocName(s))

  const statOf = (s: number): NativeStat => {
    const size = table.size(s)
    const mtime = table.mtimeMs(s)
    return {
      mode: table.mode(s), uid: table.uid(s), gid: table.gid(s), size, dev: 0, nlink: table.nlink(s), ino: table.ino(s),
      rdev: table.rdev(s), blksize: BLOCK_SIZE, blocks: blocksFor(size), atime: mtime, mtime, ctime: mtime,
    }
  }
  // The state dir is dr-x------ root, its file -r-------- root, as in the reference.
  const stateDirStat = (): NativeStat => ({
    mode: S_IFDIR | 0o500, uid: 0, gid: 0, size: 0, dev: 0, nlink: 2, ino: stateDirIno, rdev: 0, blksize: BLOCK_SIZE, blocks: 0, atime: 0, mtime: 0, ctime: 0,
  })
  // mtime moves on every getattr so auto_cache drops the file's cached pages on the next open.
  const stateFileStat = (): NativeStat => {
    const now = Date.now()
    return { mode: S_IFREG | 0o400, uid: 0, gid: 0, size: STATE_FILE_SIZE, dev: 0, nlink: 1, ino: stateFileIno, rdev: 0, blksize: BLOCK_SIZE, blocks: blocksFor(STATE_FILE_SIZE), atime: now, mtime: now, ctime: now }
  }
  /** 1 = state dir, 2 = state file, 0 = neither. */
  const special = (path: string): number => {
    if (!path.startsWith(stateDirPath)) return 0
    if (path === stateDirPath) return 1
    if (path === stateFilePath) return 2
    return 0
  }

  const guard = <A extends unknown[]>(name: string, fail: (errno: number, ...args: A) => void, fn: (...args: A) => void) => (...args: A): void => {
    try {
      fn(...args)
    } catch (e) {
      log.error({ err: e, op: name }, 'fuse-handler-failed')
      fail(EIO, ...args)
    }
  }
  const lastCb = (args: unknown[]): ((errno: number) => void) => args[args.length - 1] as (errno: number) => void
  const readOnly = (...args: unknown[]): void => { lastCb(args)(EROFS) }

  const ops: FuseOps = {
    init(cb) { cb(0) },

    getattr: guard('getattr', (e, _p: string, cb) => cb(e), (path, cb) => {
      const s = table.lookupFusePath(path)
      if (s >= 0) return cb(0, statOf(s))
      const sp = special(path)
      if (sp === 1) return cb(0, stateDirStat())
      if (sp === 2) return cb(0, stateFileStat())
      cb(ENOENT)
    }),

    readdir: guard('readdir', (e, _p: string, cb) => cb(e), (path, cb) => {
      if (special(path) === 1) {
        return cb(0, ['.', '..', stateFileName(layer.digest)], [stateDirStat(), statOf(0), stateFileStat()])
      }
      const s = table.lookupFusePath(path)
      if (s < 0) return cb(ENOENT)
      if (!table.isDir(s)) return cb(ENOTDIR)
      const kids = table.children(s)
      const names: string[] = new Array<string>(kids.length + 2)
      const st: NativeStat[] = new Array<NativeStat>(kids.length + 2)
      names[0] = '.'; st[0] = statOf(s)
      names[1] = '..'; st[1] = statOf(table.parent(s))
      for (let i = 0; i < kids.length; i++) {
        const k = kids[i] as number
        names[i + 2] = table.baseName(k)
        st[i + 2] = statOf(k)
      }
      cb(0, names, st)
    }),

    readlink: guard('readlink', (e, _p: string, cb) => cb(e), (path, cb) => {
      const s = table.lookupFusePath(path)
      if (s < 0) return cb(ENOENT)
      const target = table.linkTarget(s)
      if (target === undefined) return cb(EINVAL)
      cb(0, target)
    }),

    open: guard('open', (e, _p: string, _f: number, cb) => cb(e), (path, flags, cb) => {
      if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) return cb(EROFS)
      const s = table.lookupFusePath(path)
      if (s < 0) {
        if (special(path) === 2) return cb(0, stateFileIno)
        return cb(special(path) === 1 ? EISDIR : ENOENT)
      }
      if (table.isDir(s)) return cb(EISDIR)
      stats.opens++
      const p = table.primary(s)
      // The layer de-duplicates first accesses; here we only report the open.
      if (layer.noteAccess && table.isRegular(s) && !table.isWhiteout(s)) {
        const e = entryOf(p)
        if (e) {
          try { layer.noteAccess(e) } catch (err) { log.warn({ err, path }, 'first-access-hook-failed') }
        }
      }
      cb(0, table.ino(s))
    }),

    release(_path, _fd, cb) { cb(0) },

    read: guard('read', (e, _p: string, _fd: number, _b: Buffer, _l: number, _pos: number, cb) => cb(e), (path, fd, buf, len, pos, cb) => {
      if (fd === stateFileIno) {
        const data = renderState(layer.state(), lastError)
        const n = pos >= data.length ? 0 : data.copy(buf, 0, pos, Math.min(data.length, pos + len))
        return cb(n)
      }
      // fd is the inode number: primary slot + 1. Fall back to the path for anything else.
      let s = fd - 1
      if (!(fd >= 1 && fd <= table.maxIno && table.primary(s) === s)) s = table.lookupFusePath(path)
      if (s < 0) return cb(ENOENT)
      if (!table.isRegular(s) || table.isWhiteout(s)) return cb(EISDIR)
      const size = table.size(s)
      if (pos >= size || len === 0) return cb(0)
      const want = Math.min(len, size - pos)
      const name = table.tocName(s)
      stats.reads++
      layer.read(name, pos, want).then((data) => {
        const n = data.copy(buf, 0, 0, Math.min(data.length, want))
        stats.bytesRead += n
        cb(n)
      }, (err: unknown) => {
        stats.readErrors++
        const errno = toErrno(err)
        lastError = `read of ${JSON.stringify(name)} at offset ${pos} failed: ${(err as Error)?.message ?? String(err)}`
        log.error({ err, digest: layer.digest, path: name, offset: pos, length: want, errno }, 'read-failed')
        cb(errno === 0 ? EIO : errno)
      })
    }),

    getxattr: guard('getxattr', (e, _p: string, _n: string, _pos: number, cb) => cb(e), (path, name, _position, cb) => {
      const s = table.lookupFusePath(path)
      if (s < 0) return cb(special(path) === 0 ? ENOENT : ENODATA)
      if (table.isOpaque(s) && opaqueNames.includes(name)) return cb(0, OPAQUE_VALUE)
      const v = table.xattr(s, name)
      if (v === undefined) return cb(ENODATA)
      cb(0, v)
    }),

    listxattr: guard('listxattr', (e, _p: string, cb) => cb(e), (path, cb) => {
      const s = table.lookupFusePath(path)
      if (s < 0) return cb(special(path) === 0 ? ENOENT : 0, [])
      const names: string[] = []
      if (table.isOpaque(s)) names.push(...opaqueNames)
      for (const [k] of table.xattrs(s)) names.push(k)
      cb(0, names)
    }),

    statfs(_path, cb) {
      const st: NativeStatfs = { bsize: BLOCK_SIZE, frsize: BLOCK_SIZE, blocks: 0, bfree: 0, bavail: 0, files: table.count, ffree: 0, favail: 0, fsid: 0, flag: 1 /* ST_RDONLY */, namemax: 255 }
      cb(0, st)
    },

    access: guard('access', (e, _p: string, _m: number, cb) => cb(e), (path, mode, cb) => {
      if (table.lookupFusePath(path) < 0 && special(path) === 0) return cb(ENOENT)
      cb((mode & W_OK) !== 0 ? EROFS : 0)
    }),

    write: readOnly, create: readOnly, mknod: readOnly, mkdir: readOnly, unlink: readOnly, rmdir: readOnly,
    symlink: readOnly, rename: readOnly, link: readOnly, chmod: readOnly, chown: readOnly, truncate: readOnly,
    ftruncate: readOnly, utimens: readOnly, setxattr: readOnly, removexattr: readOnly,
  }
  // `ls -l` asks every entry for security.selinux and a POSIX ACL: one JS round trip each. A layer
  // with no xattrs and no opaque directories has nothing to answer, so leave the ops out: libfuse
  // then answers ENOSYS in C, and the kernel stops sending getxattr/listxattr on this connection
  // (it answers EOPNOTSUPP itself). Whiteouts are 0/0 character devices, not xattrs, so they are
  // unaffected; a layer with opaque directories keeps both ops.
  if (!table.anyXattrs && opts.serveXattrs !== true) {
    delete ops.getxattr
    delete ops.listxattr
  }
  return { ops: opts.onOp ? timed(ops, opts.onOp) : ops, stats }
}

/** Wrap every op so the time until its callback is reported; the callback is always last. */
function timed(ops: FuseOps, onOp: (op: string, seconds: number) => void): FuseOps {
  const out: Record<string, unknown> = {}
  for (const [name, fn] of Object.entries(ops) as Array<[string, unknown]>) {
    if (typeof fn !== 'function') { out[name] = fn; continue }
    out[name] = (...args: unknown[]) => {
      const cb = args[args.length - 1]
      if (typeof cb !== 'function') return (fn as (...a: unknown[]) => unknown)(...args)
      const t0 = performance.now()
      args[args.length - 1] = (...res: unknown[]) => {
        onOp(name, (performance.now() - t0) / 1000)
        return (cb as (...a: unknown[]) => unknown)(...res)
      }
      return (fn as (...a: unknown[]) => unknown)(...args)
    }
  }
  return out as unknown as FuseOps
}
