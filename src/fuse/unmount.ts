/**
 * Unmounting without depending on one tool's name: `fusermount3` (Debian/Ubuntu `fuse3`),
 * `fusermount` (`fuse`, or a compat link) or `umount` (util-linux; root only). A clean unmount
 * is tried first; a busy mount falls back to a lazy (detached) one so shutdown never hangs.
 */
import { listMounts, type MountInfo } from '../mounts/mount-table.js'
import { execFile } from 'node:child_process'
import { resolve } from 'node:path'

export type UnmountResult = 'clean' | 'lazy' | 'not-mounted'

interface Attempt { cmd: string; args: string[] }

function run(a: Attempt): Promise<{ ok: boolean; missing: boolean; message: string }> {
  return new Promise((done) => {
    execFile(a.cmd, a.args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (!err) return done({ ok: true, missing: false, message: '' })
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
      done({ ok: false, missing, message: `${a.cmd} ${a.args.join(' ')}: ${String(stderr).trim() || err.message}` })
    })
  })
}

/** Undo the octal escapes /proc/self/mountinfo uses for space, tab, newline and backslash. */
export { listMounts, type MountInfo }

/** The mount at exactly `path` (the topmost one if stacked), if any. */
export async function findMount(path: string): Promise<MountInfo | undefined> {
  const abs = resolve(path)
  const all = await listMounts()
  for (let i = all.length - 1; i >= 0; i--) if ((all[i] as MountInfo).mountpoint === abs) return all[i]
  return undefined
}

export async function isMounted(path: string): Promise<boolean> {
  return (await findMount(path)) !== undefined
}

/** Unmount `path`; resolves with how, rejects only when every tool failed and it is still mounted. */
export async function unmountPath(path: string, opts: { lazyFallback?: boolean } = {}): Promise<UnmountResult> {
  const abs = resolve(path)
  if (!(await isMounted(abs))) return 'not-mounted'
  const errors: string[] = []
  const tries = async (attempts: Attempt[]): Promise<boolean> => {
    for (const a of attempts) {
      const r = await run(a)
      if (r.ok) return true
      if (!r.missing) errors.push(r.message)
      if (!(await isMounted(abs))) return true
    }
    return false
  }
  const fuseMount = (await findMount(abs))?.fsType.startsWith('fuse') ?? false
  const clean: Attempt[] = fuseMount
    ? [{ cmd: 'fusermount3', args: ['-u', abs] }, { cmd: 'fusermount', args: ['-u', abs] }, { cmd: 'umount', args: [abs] }]
    : [{ cmd: 'umount', args: [abs] }]
  if (await tries(clean)) return 'clean'
  if (opts.lazyFallback ?? true) {
    const lazy: Attempt[] = fuseMount
      ? [{ cmd: 'fusermount3', args: ['-uz', abs] }, { cmd: 'fusermount', args: ['-uz', abs] }, { cmd: 'umount', args: ['-l', abs] }]
      : [{ cmd: 'umount', args: ['-l', abs] }]
    if (await tries(lazy)) return 'lazy'
  }
  throw new Error(`cannot unmount ${abs}: ${errors.join('; ') || 'no unmount tool found (fusermount3, fusermount, umount)'}`)
}
