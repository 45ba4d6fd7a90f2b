/**
 * The FUSE kernel protocol (linux/fuse.h, 7.x) as far as a read-only layer needs it: request
 * header and argument decoding, reply encoding. Little-endian, fixed offsets; every layout here is
 * checked against the C struct sizes in test/fuseproto/wire.test.ts.
 *
 * Why our own protocol code rather than libfuse (fuse-native): see README "Crash, restart and
 * upgrade" — a connection must be servable by a *new* process after the old one died, which needs
 * nodeids and file handles that are deterministic (ours: inode numbers of the layer tree) and an
 * fd we opened and mounted ourselves, neither of which libfuse2's high-level API allows.
 */

export const FUSE_KERNEL_VERSION = 7
/** The minor we speak: 7.40 adds FUSE_NOTIFY_RESEND, the one newer feature we rely on. */
export const FUSE_OUR_MINOR = 40
export const FUSE_ROOT_ID = 1

export const IN_HEADER_SIZE = 40
export const OUT_HEADER_SIZE = 16
export const ATTR_SIZE = 88
export const ENTRY_OUT_SIZE = 128
export const ATTR_OUT_SIZE = 104
export const OPEN_OUT_SIZE = 16
export const INIT_OUT_SIZE = 64
export const STATFS_OUT_SIZE = 80
export const GETXATTR_OUT_SIZE = 8
export const DIRENT_HEADER_SIZE = 24

export const Op = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9, UNLINK: 10,
  RMDIR: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17, RELEASE: 18, FSYNC: 20,
  SETXATTR: 21, GETXATTR: 22, LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25, INIT: 26, OPENDIR: 27,
  READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30, GETLK: 31, SETLK: 32, SETLKW: 33, ACCESS: 34, CREATE: 35,
  INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40, NOTIFY_REPLY: 41, BATCH_FORGET: 42,
  FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46, COPY_FILE_RANGE: 47, SYNCFS: 50, TMPFILE: 51, STATX: 52,
} as const

/** Requests the kernel expects no reply to. */
export const NO_REPLY: ReadonlySet<number> = new Set([Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT, Op.NOTIFY_REPLY])
/** Requests that would change the tree: EROFS (the mount is `ro` too, so few ever arrive). */
export const MUTATING: ReadonlySet<number> = new Set([
  Op.SETATTR, Op.SYMLINK, Op.MKNOD, Op.MKDIR, Op.UNLINK, Op.RMDIR, Op.RENAME, Op.LINK, Op.WRITE, Op.SETXATTR,
  Op.REMOVEXATTR, Op.CREATE, Op.FALLOCATE, Op.RENAME2, Op.COPY_FILE_RANGE, Op.TMPFILE,
])

/** fuse_init_in/out flags (the low 32 bits). */
export const InitFlag = {
  ASYNC_READ: 1 << 0, BIG_WRITES: 1 << 5, DO_READDIRPLUS: 1 << 13, PARALLEL_DIROPS: 1 << 18, MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23, INIT_EXT: 1 << 30,
} as const

export const FOPEN_DIRECT_IO = 1
export const FOPEN_KEEP_CACHE = 2
export const FOPEN_CACHE_DIR = 8

/** Notification codes (written with unique 0 and the code in the error field). */
export const FUSE_NOTIFY_RESEND = 7
/** Set by the kernel in `unique` of a request it resent after FUSE_NOTIFY_RESEND. */
export const UNIQUE_RESEND_BIT_HI = 0x80000000

const TWO32 = 0x1_0000_0000

export interface InHeader {
  len: number
  opcode: number
  /** `unique` as two halves: echoed back verbatim (the resend bit lives in the high half). */
  uniqueLo: number
  uniqueHi: number
  nodeid: number
  uid: number
  gid: number
  pid: number
}

export function readU64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * TWO32
}

function writeU64(b: Buffer, off: number, v: number): void {
  const n = v < 0 ? 0 : Math.floor(v)
  b.writeUInt32LE(n % TWO32, off)
  b.writeUInt32LE(Math.floor(n / TWO32) % TWO32, off + 4)
}

/** Signed seconds (times before 1970 exist in TOCs). */
function writeS64(b: Buffer, off: number, v: number): void {
  if (v >= 0) writeU64(b, off, v)
  else b.writeBigInt64LE(BigInt(Math.floor(v)), off)
}

export function parseInHeader(b: Buffer): InHeader {
  return {
    len: b.readUInt32LE(0), opcode: b.readUInt32LE(4), uniqueLo: b.readUInt32LE(8), uniqueHi: b.readUInt32LE(12),
    nodeid: readU64(b, 16), uid: b.readUInt32LE(24), gid: b.readUInt32LE(28), pid: b.readUInt32LE(32),
  }
}

export function encodeOutHeader(h: { uniqueLo: number; uniqueHi: number }, error: number, payloadLen: number): Buffer {
  const b = Buffer.allocUnsafe(OUT_HEADER_SIZE)
  b.writeUInt32LE(OUT_HEADER_SIZE + payloadLen, 0)
  b.writeInt32LE(error, 4)
  b.writeUInt32LE(h.uniqueLo, 8)
  b.writeUInt32LE(h.uniqueHi, 12)
  return b
}

/** A notification: unique 0, code in the error field, then its payload. */
export function encodeNotify(code: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OUT_HEADER_SIZE + payload.length)
  b.writeUInt32LE(b.length, 0)
  b.writeInt32LE(code, 4)
  payload.copy(b, OUT_HEADER_SIZE)
  return b
}

/** A NUL-terminated name at `off` (LOOKUP, GETXATTR). */
export function readCString(b: Buffer, off: number): string {
  const end = b.indexOf(0, off)
  return b.toString('utf8', off, end < 0 ? b.length : end)
}

export interface Attr {
  ino: number; size: number; blocks: number; mtimeMs: number; mode: number; nlink: number; uid: number; gid: number; rdev: number; blksize: number
}

/** fuse_attr: atime = mtime = ctime, from milliseconds. */
export function writeAttr(b: Buffer, off: number, a: Attr): void {
  const sec = Math.floor(a.mtimeMs / 1000)
  const nsec = Math.round((a.mtimeMs - sec * 1000) * 1e6)
  writeU64(b, off, a.ino)
  writeU64(b, off + 8, a.size)
  writeU64(b, off + 16, a.blocks)
  writeS64(b, off + 24, sec)
  writeS64(b, off + 32, sec)
  writeS64(b, off + 40, sec)
  b.writeUInt32LE(nsec, off + 48)
  b.writeUInt32LE(nsec, off + 52)
  b.writeUInt32LE(nsec, off + 56)
  b.writeUInt32LE(a.mode >>> 0, off + 60)
  b.writeUInt32LE(a.nlink >>> 0, off + 64)
  b.writeUInt32LE(a.uid >>> 0, off + 68)
  b.writeUInt32LE(a.gid >>> 0, off + 72)
  b.writeUInt32LE(a.rdev >>> 0, off + 76)
  b.writeUInt32LE(a.blksize >>> 0, off + 80)
  b.writeUInt32LE(0, off + 84)
}

/** Validity in seconds → (u64 seconds, u32 nanoseconds). */
function writeValid(b: Buffer, secOff: number, nsecOff: number, seconds: number): void {
  const s = Math.floor(seconds)
  writeU64(b, secOff, s)
  b.writeUInt32LE(Math.round((seconds - s) * 1e9), nsecOff)
}

/** fuse_entry_out; `attr` undefined = a negative entry (nodeid 0) cached for entryValidSec. */
export function writeEntryOut(b: Buffer, off: number, nodeid: number, entryValidSec: number, attrValidSec: number, attr: Attr | undefined): void {
  b.fill(0, off, off + ENTRY_OUT_SIZE)
  writeU64(b, off, nodeid)
  writeValid(b, off + 16, off + 32, entryValidSec)
  writeValid(b, off + 24, off + 36, attrValidSec)
  if (attr) writeAttr(b, off + 40, attr)
}

export function encodeEntryOut(nodeid: number, entryValidSec: number, attrValidSec: number, attr: Attr | undefined): Buffer {
  const b = Buffer.allocUnsafe(ENTRY_OUT_SIZE)
  writeEntryOut(b, 0, nodeid, entryValidSec, attrValidSec, attr)
  return b
}

export function encodeAttrOut(attrValidSec: number, attr: Attr): Buffer {
  const b = Buffer.alloc(ATTR_OUT_SIZE)
  writeValid(b, 0, 8, attrValidSec)
  writeAttr(b, 16, attr)
  return b
}

export function encodeOpenOut(fh: number, openFlags: number): Buffer {
  const b = Buffer.alloc(OPEN_OUT_SIZE)
  writeU64(b, 0, fh)
  b.writeUInt32LE(openFlags, 8)
  return b
}

export interface Statfs { blocks: number; bfree: number; bavail: number; files: number; ffree: number; bsize: number; namelen: number; frsize: number }

export function encodeStatfsOut(s: Statfs): Buffer {
  const b = Buffer.alloc(STATFS_OUT_SIZE)
  writeU64(b, 0, s.blocks)
  writeU64(b, 8, s.bfree)
  writeU64(b, 16, s.bavail)
  writeU64(b, 24, s.files)
  writeU64(b, 32, s.ffree)
  b.writeUInt32LE(s.bsize, 40)
  b.writeUInt32LE(s.namelen, 44)
  b.writeUInt32LE(s.frsize, 48)
  return b
}

export function encodeGetxattrOut(size: number): Buffer {
  const b = Buffer.alloc(GETXATTR_OUT_SIZE)
  b.writeUInt32LE(size, 0)
  return b
}

export interface InitIn { major: number; minor: number; maxReadahead: number; flags: number; flags2: number }

export function parseInitIn(b: Buffer): InitIn {
  const o = IN_HEADER_SIZE
  const has2 = b.length >= o + 20
  return {
    major: b.readUInt32LE(o), minor: b.readUInt32LE(o + 4), maxReadahead: b.readUInt32LE(o + 8), flags: b.readUInt32LE(o + 12),
    flags2: has2 ? b.readUInt32LE(o + 16) : 0,
  }
}

export interface InitOut {
  minor: number; maxReadahead: number; flags: number; flags2: number; maxBackground: number; congestionThreshold: number
  maxWrite: number; timeGran: number; maxPages: number
}

export function encodeInitOut(o: InitOut): Buffer {
  const b = Buffer.alloc(INIT_OUT_SIZE)
  b.writeUInt32LE(FUSE_KERNEL_VERSION, 0)
  b.writeUInt32LE(o.minor, 4)
  b.writeUInt32LE(o.maxReadahead, 8)
  b.writeUInt32LE(o.flags >>> 0, 12)
  b.writeUInt16LE(o.maxBackground, 16)
  b.writeUInt16LE(o.congestionThreshold, 18)
  b.writeUInt32LE(o.maxWrite, 20)
  b.writeUInt32LE(o.timeGran, 24)
  b.writeUInt16LE(o.maxPages, 28)
  b.writeUInt16LE(0, 30)
  b.writeUInt32LE(o.flags2 >>> 0, 32)
  return b
}

/** fuse_read_in (READ, READDIR): fh, offset, size. */
export function parseReadIn(b: Buffer): { fh: number; offset: number; size: number } {
  const o = IN_HEADER_SIZE
  return { fh: readU64(b, o), offset: readU64(b, o + 8), size: b.readUInt32LE(o + 16) }
}

/** fuse_open_in flags; fuse_getattr_in/fuse_access_in/fuse_getxattr_in first word. */
export function parseU32Arg(b: Buffer, at = 0): number {
  return b.readUInt32LE(IN_HEADER_SIZE + at)
}

/** BATCH_FORGET's count of fuse_forget_one records. */
export function parseBatchForgetCount(b: Buffer): number {
  return b.readUInt32LE(IN_HEADER_SIZE)
}

export function direntSize(nameBytes: number): number {
  return (DIRENT_HEADER_SIZE + nameBytes + 7) & ~7
}

/** One fuse_dirent at `off` (padding zeroed); returns the offset after it. `next` is the cookie of the following entry. */
export function writeDirent(b: Buffer, off: number, ino: number, next: number, type: number, name: Buffer): number {
  const size = direntSize(name.length)
  writeU64(b, off, ino)
  writeU64(b, off + 8, next)
  b.writeUInt32LE(name.length, off + 16)
  b.writeUInt32LE(type, off + 20)
  name.copy(b, off + DIRENT_HEADER_SIZE)
  b.fill(0, off + DIRENT_HEADER_SIZE + name.length, off + size)
  return off + size
}
