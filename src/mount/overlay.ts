/**
 * overlayfs over layer mounts: `lowerdir` lists layers top-first (the manifest lists them
 * bottom-first). Read-only unless upper/work dirs are given.
 */
import { execFile } from 'node:child_process'
import { FailedPreconditionError, InvalidArgumentError } from '../errors.js'

/** The kernel takes mount options in one page. */
const MAX_OPTIONS = 4000

export interface OverlaySpec {
  /** Lower directories, top layer first. */
  lowerTopFirst: string[]
  upper?: { upperdir: string; workdir: string }
}

export function overlayOptions(spec: OverlaySpec): string {
  const all = [...spec.lowerTopFirst, ...(spec.upper ? [spec.upper.upperdir, spec.upper.workdir] : [])]
  for (const d of all) {
    if (/[:,\\\n]/.test(d)) throw new InvalidArgumentError(`overlay: directory ${JSON.stringify(d)} contains ':', ',' or '\\', which overlay options cannot carry`)
  }
  if (spec.lowerTopFirst.length === 0) throw new InvalidArgumentError('overlay: no lower directories')
  const opts = [`lowerdir=${spec.lowerTopFirst.join(':')}`]
  if (spec.upper) opts.push(`upperdir=${spec.upper.upperdir}`, `workdir=${spec.upper.workdir}`)
  else opts.unshift('ro')
  const s = opts.join(',')
  if (s.length > MAX_OPTIONS) throw new InvalidArgumentError(`overlay: options are ${s.length} bytes, more than ${MAX_OPTIONS}; use a shorter --state-dir`)
  return s
}

export function mountOverlay(spec: OverlaySpec, mountpoint: string): Promise<void> {
  // overlayfs refuses a single lower dir without an upper; a read-only bind is the same view.
  // The view users see is nosuid,nodev: the image's setuid binaries and device nodes must not
  // become a way in for local users (the FUSE layers below keep suid,dev for containers).
  const single = spec.upper === undefined && spec.lowerTopFirst.length === 1
  const args = single
    ? ['--bind', '-o', 'ro,nosuid,nodev', spec.lowerTopFirst[0] as string, mountpoint]
    : ['-t', 'overlay', 'overlay', '-o', `nosuid,nodev,${overlayOptions(spec)}`, mountpoint]
  return new Promise((resolve, reject) => {
    execFile('mount', args, { timeout: 60_000 }, (err, _out, stderr) => {
      if (!err) return resolve()
      reject(new FailedPreconditionError(`mounting overlay at ${mountpoint} failed: ${String(stderr).trim() || err.message}`, { cause: err }))
    })
  })
}
