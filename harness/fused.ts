/**
 * stargz-fused started by a test's stargzd (--fuse-manager default) outlives the daemon by design:
 * stop it (SIGTERM: it unmounts its layers) and wait for it to exit, then its fd holder. Safe when none is running.
 */
import { spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { FusedClient } from '../src/fused/client.js'
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
  if (pid === undefined || !alive(pid)) return stopHolder(root)
  process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 300 && alive(pid); i++) await sleep(100)
  if (alive(pid)) process.kill(pid, 'SIGKILL')
  for (let i = 0; i < 50 && alive(pid); i++) await sleep(100)
  // With the protocol backend it also started an fd holder; stopped after it, nothing is held.
  await stopHolder(root)
}

/** The fd holder stargz-fused started (src/fuseproto/holder.ts): its pid, from its pid file. */
export function holderPid(root: string): Promise<number | undefined> {
  return readFile(join(root, 'fused.sock.holder.pid'), 'utf8').then((s) => Number(s.trim()) || undefined, () => undefined)
}

/** Stop the fd holder (SIGTERM: it closes the fds it holds) and wait for it to exit. */
export async function stopHolder(root: string): Promise<void> {
  const pid = await holderPid(root)
  if (pid === undefined || !alive(pid)) return
  process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(100)
  if (alive(pid)) process.kill(pid, 'SIGKILL')
}

export { alive as processAlive }

/**
 * Start stargz-fused by hand, as systemd's Restart= would after it died (detached, stdio to
 * `<root>/fused.sock.log`); resolves with its pid once it answers on its socket.
 */
export async function startFused(root: string, argv: readonly string[]): Promise<number> {
  const script = fileURLToPath(new URL('../daemon/stargz-fused.ts', import.meta.url))
  const out = openSync(join(root, 'fused.sock.log'), 'a', 0o600)
  let pid: number | undefined
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...argv], { detached: true, stdio: ['ignore', out, out], env: process.env })
    child.unref()
    pid = child.pid
  } finally {
    closeSync(out)
  }
  const client = new FusedClient(join(root, 'fused.sock'))
  try {
    for (let i = 0; i < 1200; i++) {
      const h = await client.hello().catch(() => undefined)
      if (h !== undefined && h.pid === pid) return pid
      if (pid === undefined || !alive(pid)) throw new Error(`stargz-fused exited at start; see ${join(root, 'fused.sock.log')}`)
      await sleep(50)
    }
  } finally {
    await client.close()
  }
  throw new Error('stargz-fused did not answer within 60 s')
}

/** Wait for a process to be gone (after a kill). */
export async function waitGone(pid: number, ms = 30_000): Promise<void> {
  for (let i = 0; i < ms / 50 && alive(pid); i++) await sleep(50)
}
