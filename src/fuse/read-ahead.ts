/**
 * Raise the kernel read-ahead of one FUSE mount (its backing device info lives at
 * /sys/class/bdi/<major:minor>/). PERF_NOTES measured ~25% faster cold sequential reads at
 * 1024 KiB vs the 128 KiB default. Best effort: needs root and a writable /sys.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { findMount } from './unmount.js'

export async function setReadAhead(mountpoint: string, kib: number): Promise<{ ok: boolean; previous?: number; reason?: string }> {
  const m = await findMount(mountpoint)
  if (!m) return { ok: false, reason: 'not mounted' }
  const file = `/sys/class/bdi/${m.majorMinor}/read_ahead_kb`
  try {
    const previous = Number((await readFile(file, 'utf8')).trim())
    await writeFile(file, `${kib}\n`)
    return { ok: true, previous }
  } catch (e) {
    return { ok: false, reason: `${file}: ${(e as Error).message}` }
  }
}
