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

/**
 * Detach everything mounted under `dir` but `keep`, `parallel` at a time (a restart after a crash
 * has one dead mount per lazy layer; umount -l is a process each); returns those still there.
 * Nested mounts are detached deepest first within each batch's ordering (mountsUnder's order).
 */
export async function detachAllUnder(dir: string, keep: ReadonlySet<string> = new Set(), parallel = 1): Promise<string[]> {
  const todo = (await mountsUnder(dir)).filter((mp) => !keep.has(mp))
  if (todo.length === 0) return []
  const worker = async (): Promise<void> => {
    for (let mp = todo.shift(); mp !== undefined; mp = todo.shift()) await detach(mp).catch(() => undefined)
  }
  await Promise.all(Array.from({ length: Math.max(1, parallel) }, worker))
  return (await mountsUnder(dir)).filter((mp) => !keep.has(mp))
}
