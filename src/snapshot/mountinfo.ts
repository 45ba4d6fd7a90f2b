/** Mount table helpers: what is mounted under a directory, and detaching it. */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'

/** Mount points at or below `dir`, deepest first (field 5 of /proc/self/mountinfo, octal-unescaped). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8')
  const out: string[] = []
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4]
    if (!field) continue
    const mp = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
    if (mp === dir || mp.startsWith(dir + '/')) out.push(mp)
  }
  return out.sort((a, b) => b.length - a.length)
}

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
export async function detachAllUnder(dir: string): Promise<string[]> {
  for (const mp of await mountsUnder(dir)) await detach(mp).catch(() => undefined)
  return mountsUnder(dir)
}
