/**
 * stargz-fused started by a test's stargzd (--fuse-manager default) outlives the daemon by design:
 * stop it (SIGTERM: it unmounts its layers) and wait for it to exit. Safe when none is running.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export function fusedPid(root: string): Promise<number | undefined> {
  return readFile(join(root, 'fused.sock.pid'), 'utf8').then((s) => Number(s.trim()) || undefined, () => undefined)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export async function stopFused(root: string): Promise<void> {
  const pid = await fusedPid(root)
  if (pid === undefined || !alive(pid)) return
  process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 300 && alive(pid); i++) await sleep(100)
  if (alive(pid)) process.kill(pid, 'SIGKILL')
  for (let i = 0; i < 50 && alive(pid); i++) await sleep(100)
}
