/**
 * FileSystem.mount under a deadline. On timeout the mount is aborted through its AbortSignal and
 * we wait a grace period for it to settle: a mount that completes after we gave up is unmounted
 * again, and one that never settles is reported as `unsettled` so the caller can abandon the
 * mountpoint instead of letting containerd unpack into a directory that may still get a mount.
 */
import { StargzError, errorMessage } from '../errors.js'
import type { FileSystem, RemoteLayerInfo } from './filesystem.js'

export class MountTimeoutError extends StargzError {
  constructor(readonly mountpoint: string, readonly ms: number, readonly unsettled: boolean) {
    super('ERR_TIMEOUT', `mounting ${mountpoint} did not finish within ${ms} ms${unsettled ? ' and did not stop when aborted' : ''}`)
  }
}

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
  ac.abort(new StargzError('ERR_TIMEOUT', `mount deadline of ${ms} ms passed`))
  const late = await settleWithin(attempt, graceMs)
  if (late === 'resolved') {
    await fs.unmount(mountpoint).catch((e: unknown) => {
      throw new StargzError('ERR_TIMEOUT', `mount of ${mountpoint} completed after its deadline and could not be undone: ${errorMessage(e)}`)
    })
  }
  throw new MountTimeoutError(mountpoint, ms, late === 'pending')
}
