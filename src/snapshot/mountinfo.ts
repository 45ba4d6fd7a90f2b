/** Mount table helpers: what is mounted under a directory, and detaching it. */
import { execFile } from 'node:child_process'
import { mountsUnder } from '../mounts/mount-table.js'

export { mountsUnder }

/**
 * Lazily unmount `mountpoint` (umount -l: detach now, release when no longer busy). Works on a
 * FUSE mount whose server died ("transport endpoint is not connected").
 */
export function detach(mountpoint: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('umount', ['-l', mountpoint], { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`umount -l ${mountpoint}: ${String(stderr).trim() || err.message}`))
      else resolve()
    })
  })
}

/** Detach everything mounted under `dir`; returns the mount points that are still there. */
export async function detachAllUnder(dir: string, keep: ReadonlySet<string> = new Set()): Promise<string[]> {
  for (const mp of await mountsUnder(dir)) if (!keep.has(mp)) await detach(mp).catch(() => undefined)
  return (await mountsUnder(dir)).filter((mp) => !keep.has(mp))
}
