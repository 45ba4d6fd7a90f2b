/**
 * Overlay options that hold with FUSE lower layers, following containerd's overlay snapshotter:
 *
 * - index=off whenever the kernel knows the option: with index=on overlayfs needs file handles
 *   (NFS export) from every lower layer, which a FUSE layer does not provide; the mount would
 *   then fail or fall back with a warning depending on the kernel.
 * - userxattr only inside a user namespace (rootless), where trusted.* xattrs are not allowed.
 * - redirect_dir / metacopy are left to the kernel's defaults (off unless the admin turned them
 *   on); nothing we do needs them, and a read-only FUSE lower does not break either.
 */
import { existsSync, readFileSync } from 'node:fs'

export interface OverlayOptions {
  indexOff: boolean
  userxattr: boolean
}

export function detectOverlayOptions(): OverlayOptions {
  const indexOff = existsSync('/sys/module/overlay/parameters/index')
  let userxattr = false
  try {
    const map = readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/)
    userxattr = !(map[0] === '0' && map[1] === '0' && map[2] === '4294967295')
  } catch {
    userxattr = false
  }
  return { indexOff, userxattr }
}
