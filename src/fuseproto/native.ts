/**
 * The repo's own small addon (native/fusefd.c, built by scripts/build-native.sh): pidfd_getfd and a
 * reader thread per /dev/fuse connection. Found beside the checkout (src/fuseproto → ../../native)
 * or beside the built tree (dist/src/fuseproto → ../../../native); $STARGZ_FUSEFD overrides.
 */
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { FailedPreconditionError } from '../errors.js'

export interface FuseFdAddon {
  /** A copy, in this process, of `fd` of process `pid` (pidfd_getfd). Throws with `errno`. */
  getfd(pid: number, fd: number): number
  /**
   * Start a thread reading requests of up to `size` bytes from `fd`; each one reaches `cb` on the
   * event loop. When the connection ends (ENODEV: unmounted or aborted) `cb(null, errno)` is the
   * last call and the thread exits.
   */
  startReader(fd: number, size: number, cb: (request: Buffer | null, errno: number) => void): void
}

let loaded: FuseFdAddon | undefined

export function addonPath(): string {
  const env = process.env.STARGZ_FUSEFD
  if (env !== undefined && env !== '') return env
  for (const rel of ['../../native/build/fusefd.node', '../../../native/build/fusefd.node']) {
    const p = fileURLToPath(new URL(rel, import.meta.url))
    if (existsSync(p)) return p
  }
  return fileURLToPath(new URL('../../native/build/fusefd.node', import.meta.url))
}

export function loadFuseFd(): FuseFdAddon {
  if (loaded) return loaded
  const p = addonPath()
  try {
    loaded = createRequire(import.meta.url)(p) as FuseFdAddon
  } catch (e) {
    throw new FailedPreconditionError(`the fusefd addon does not load from ${p} (run scripts/build-native.sh): ${(e as Error).message}`, { cause: e })
  }
  return loaded
}

/** Does the addon load here? (the protocol backend is chosen only if it does) */
export function fuseFdAvailable(): boolean {
  try {
    loadFuseFd()
    return true
  } catch {
    return false
  }
}
