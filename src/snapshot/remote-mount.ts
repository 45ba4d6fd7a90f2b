/**
 * FileSystem.mount under a deadline. On timeout the mount is aborted through its AbortSignal and
 * we wait a grace period for it to settle: a mount that completes after we gave up is unmounted
 * again. Every timeout is a TimeoutError; `mayHoldMount` says the directory may have a mount on
 * it now or later — the mount never settled, or it landed late and could not be undone — so the
 * caller abandons the mountpoint instead of letting containerd unpack into it.
 */
import { TimeoutError, errorMessage } from '../errors.js'
import type { FileSystem, RemoteLayerInfo } from './filesystem.js'

function settleWithin(p: Promise<void>, ms: number): Promise<'resolved' | 'rejected' | 'pending'> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<'pending'>((resolve) => { timer = setTimeout(() => resolve('pending'), ms) })
  return Promise.race([p.then(() => 'resolved' as const, () => 'rejected' as const), t]).finally(() => clearTimeout(timer))
}

export async function mountWithDeadline(fs: FileSystem, mountpoint: string, layer: RemoteLayerInfo, ms: number, graceMs = Math.min(ms, 10_000)): Promise<void> {
  const ac = new AbortController()
  const attempt = Promise.resolve().then(() => fs.mount(mountpoint, layer, ac.signal))
  attempt.catch(() => undefined) // observed below; never an unhandled rejection
  const outcome = await settleWithin(attempt, ms)
  if (outcome === 'resolved') return
  if (outcome === 'rejected') {
    await attempt // rethrows the FileSystem's own error
    return
  }
  ac.abort(new TimeoutError(`mount deadline of ${ms} ms passed`, { ms, mountpoint }))
  const late = await settleWithin(attempt, graceMs)
  if (late === 'resolved') {
    try {
      await fs.unmount(mountpoint)
    } catch (e) {
      throw new TimeoutError(`mount of ${mountpoint} completed after its deadline of ${ms} ms and could not be undone: ${errorMessage(e)}`, { ms, mountpoint, mayHoldMount: true }, { cause: e })
    }
  }
  const unsettled = late === 'pending'
  throw new TimeoutError(`mounting ${mountpoint} did not finish within ${ms} ms${unsettled ? ' and did not stop when aborted' : ''}`, { ms, mountpoint, mayHoldMount: unsettled })
}
