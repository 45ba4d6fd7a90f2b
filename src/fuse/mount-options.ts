/**
 * FUSE mount options for one immutable layer, chosen from PERF_NOTES measurements:
 *
 * - `ro`: writes fail with EROFS in the kernel before reaching us.
 * - long `entry_timeout` / `attr_timeout` / `negative_timeout`: the tree never changes, and with
 *   timeouts of 0 `ls -lR` was 40–100× slower.
 * - page cache kept across opens: `auto_cache` by default, which keeps cached pages unless a
 *   file's mtime or size changed (checked with one getattr on open when the cached attributes are
 *   older than `ac_attr_timeout`). Layer files never change, so they keep their pages like with
 *   `kernel_cache`; the state file's mtime moves on every getattr, so it is read fresh.
 *   `kernel_cache` (never drop) is available for measurement.
 * - `use_ino`: our inode numbers reach stat(2), so hardlinks share st_ino.
 * - `allow_other`: container processes run as other uids than the daemon (root).
 * - `default_permissions`: the kernel checks mode bits against the TOC's uid/gid; without it a
 *   0600 root file in a layer would be readable by anyone through the layer mount.
 * - `suid`, `dev`: libfuse2 mounts nosuid,nodev by default; images carry setuid binaries and
 *   device nodes that must keep working through the overlay.
 */
import { LIBRARY_DEFAULTS } from '../config/defaults.js'

export type CacheMode = 'auto' | 'kernel' | 'none'

export interface FuseTuning {
  /** Seconds the kernel may cache attributes ([fuse] attr_timeout; default 3600). */
  attrTimeoutSec?: number
  /** Seconds the kernel may cache name lookups, found or not ([fuse] entry_timeout; default 3600). */
  entryTimeoutSec?: number
  cache?: CacheMode
  /** With cache 'auto': how old cached attributes may be before an open re-checks them (s, default 1). */
  autoCacheCheckSec?: number
  allowOther?: boolean
  defaultPermissions?: boolean
  /** Name shown as the mount source (commas are replaced). */
  fsName?: string
}

export function buildMountOptions(t: FuseTuning = {}): string[] {
  const attr = t.attrTimeoutSec ?? LIBRARY_DEFAULTS.fuse.attrTimeoutSec
  const entry = t.entryTimeoutSec ?? LIBRARY_DEFAULTS.fuse.entryTimeoutSec
  const opts = ['ro', 'use_ino', 'suid', 'dev', 'subtype=stargz', `fsname=${(t.fsName ?? 'stargz').replace(/[,\s\\]/g, '_')}`,
    `entry_timeout=${entry}`, `attr_timeout=${attr}`, `negative_timeout=${entry}`]
  if (t.allowOther ?? true) opts.push('allow_other')
  if (t.defaultPermissions ?? true) opts.push('default_permissions')
  const cache = t.cache ?? 'auto'
  if (cache === 'kernel') opts.push('kernel_cache')
  else if (cache === 'auto') opts.push('auto_cache', `ac_attr_timeout=${t.autoCacheCheckSec ?? 1}`)
  return opts
}
