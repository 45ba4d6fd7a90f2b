/**
 * File attributes as the kernel sees them, derived from TOC entries.
 */
import type { TocEntry, TocEntryType } from '../estargz/types.js'

export const S_IFMT = 0o170000
export const S_IFSOCK = 0o140000
export const S_IFLNK = 0o120000
export const S_IFREG = 0o100000
export const S_IFBLK = 0o060000
export const S_IFDIR = 0o040000
export const S_IFCHR = 0o020000
export const S_IFIFO = 0o010000

/** Preferred I/O size reported to stat(2), as the reference does. */
export const BLOCK_SIZE = 4096
/** st_size of directories: what ext4 and tar extraction show. */
export const DIR_SIZE = 4096

const TYPE_BITS: Record<Exclude<TocEntryType, 'chunk' | 'hardlink'>, number> = {
  dir: S_IFDIR, reg: S_IFREG, symlink: S_IFLNK, char: S_IFCHR, block: S_IFBLK, fifo: S_IFIFO,
}

/**
 * st_mode of an entry: its permission and setuid/setgid/sticky bits from the TOC (tar mode;
 * some writers leave file-type bits in it, which are dropped) and type bits from its type.
 * Hardlinks take their target's mode; pass the resolved entry.
 */
export function modeOf(e: TocEntry): number {
  const t = e.type === 'hardlink' || e.type === 'chunk' ? 'reg' : e.type
  // The reference writes `mode` with omitempty: absent means 0 (TocIndex gives implied dirs 0755).
  const perm = (e.mode ?? 0) & 0o7777
  return TYPE_BITS[t] | perm
}

/** Linux dev_t encoding (new_encode_dev); FUSE carries rdev as 32 bits. */
export function makedev(major: number, minor: number): number {
  return (((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0)
}

/** RFC 3339 modtime → milliseconds since the epoch (FUSE here carries milliseconds); 0 if absent. */
export function modtimeMs(e: TocEntry): number {
  if (e.modtime === undefined) return 0
  const ms = Date.parse(e.modtime)
  return Number.isFinite(ms) ? ms : 0
}

/** st_size: file size for regular files, target length for symlinks. */
export function sizeOf(e: TocEntry): number {
  switch (e.type) {
    case 'reg': return e.size ?? 0
    case 'symlink': return Buffer.byteLength(e.linkName ?? '')
    case 'dir': return DIR_SIZE
    default: return 0
  }
}

/** What fuse-native turns into a struct stat (times in ms since the epoch). */
export interface FuseStat {
  mode: number
  uid: number
  gid: number
  size: number
  dev: number
  nlink: number
  ino: number
  rdev: number
  blksize: number
  blocks: number
  atime: number
  mtime: number
  ctime: number
}

/** 512-byte blocks, rounded up to whole BLOCK_SIZE blocks (what du shows on ext4). */
export function blocksFor(size: number): number {
  return Math.ceil(size / BLOCK_SIZE) * (BLOCK_SIZE / 512)
}
