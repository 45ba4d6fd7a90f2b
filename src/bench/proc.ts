/**
 * Process and mount plumbing for `stargz bench`: running commands (plain, timed, or until a given
 * output line), finding and unmounting what is mounted under a directory, finding processes by
 * their command line, and one process-wide list of cleanups that SIGINT/SIGTERM/SIGHUP run.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { mountsUnder } from '../mounts/mount-table.js'

export interface CommandResult {
  stdout: string
  stderr: string
  /** Exit code; -1 if killed by a signal or the timeout. */
  code: number
}

export interface CommandOptions {
  input?: string | Buffer
  /** Default 120 s. */
  timeoutMs?: number
  env?: NodeJS.ProcessEnv
}

export function run(cmd: string, args: string[], opts: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, {
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
      timeout: opts.timeoutMs ?? 120_000,
      killSignal: 'SIGKILL',
      ...(opts.env ? { env: opts.env } : {}),
    }, (err, stdout, stderr) => {
      let code = 0
      if (err) {
        const c = (err as NodeJS.ErrnoException & { code?: unknown }).code
        code = typeof c === 'number' ? c : -1
        if (typeof c === 'string' || err.killed) stderr = `${stderr}${stderr ? '\n' : ''}${cmd}: ${err.message}`
      }
      resolve({ stdout: String(stdout), stderr: String(stderr), code })
    })
    if (opts.input !== undefined) child.stdin?.end(opts.input)
    else child.stdin?.end()
  })
}

/** Like run(), but throws with the command line and its stderr when the exit code is not 0. */
export async function mustRun(cmd: string, args: string[], opts: CommandOptions = {}): Promise<CommandResult> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${(r.stderr || r.stdout).trim().slice(-2000)}`)
  return r
}

export interface LineRunResult extends CommandResult {
  /** ms from spawn to the first stdout line that matched; undefined if none did. */
  lineMs: number | undefined
  /** ms from spawn to exit. */
  exitMs: number
  /** The matched line. */
  line: string | undefined
}

/**
 * Spawn `cmd` and time it: when the first stdout line satisfying `match` arrives, and when it
 * exits. Killed (SIGKILL) after `timeoutMs`.
 */
export function runUntilLine(cmd: string, args: string[], match: (line: string) => boolean, opts: { timeoutMs?: number } = {}): Promise<LineRunResult> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let pending = ''
    let lineMs: number | undefined
    let line: string | undefined
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
      if (lineMs !== undefined) return
      pending += d
      const parts = pending.split('\n')
      pending = parts.pop() ?? ''
      for (const l of parts) {
        if (match(l.replace(/\r$/, ''))) {
          lineMs = performance.now() - t0
          line = l
          break
        }
      }
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-8000) })
    const timer = setTimeout(() => {
      stderr += `\n${cmd}: killed after ${opts.timeoutMs ?? 600_000} ms`
      child.kill('SIGKILL')
    }, opts.timeoutMs ?? 600_000)
    child.once('error', (e) => { stderr += `\n${cmd}: ${e.message}` })
    child.once('close', (code) => {
      clearTimeout(timer)
      const exitMs = performance.now() - t0
      // A last line without a newline.
      if (lineMs === undefined && pending !== '' && match(pending)) { lineMs = exitMs; line = pending }
      resolve({ stdout, stderr, code: code ?? -1, lineMs, exitMs, line })
    })
  })
}

/** ms a command took, throwing if it failed. */
export async function timed(cmd: string, args: string[], opts: CommandOptions = {}): Promise<{ ms: number; result: CommandResult }> {
  const t0 = performance.now()
  const result = await mustRun(cmd, args, opts)
  return { ms: performance.now() - t0, result }
}

// ---- mounts ----------------------------------------------------------------------------------

export { mountsUnder }

/** Unmount everything at or below dir (recursive, lazy if that fails). Returns what remains. */
export async function unmountUnder(dir: string): Promise<string[]> {
  for (let round = 0; round < 3; round++) {
    const mounts = await mountsUnder(dir)
    if (mounts.length === 0) return []
    for (const mp of mounts) {
      const r = await run('umount', ['-R', mp], { timeoutMs: 30_000 })
      if (r.code !== 0) await run('umount', ['-l', mp], { timeoutMs: 30_000 })
    }
  }
  return mountsUnder(dir)
}

// ---- processes -------------------------------------------------------------------------------

/** PIDs of processes whose command line has an argument equal to, or containing, `needle`. */
export async function pidsMentioning(needle: string, opts: { substring?: boolean } = {}): Promise<number[]> {
  const pids: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    try {
      const args = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0')
      if (opts.substring ? args.some((a) => a.includes(needle)) : args.includes(needle)) pids.push(Number(name))
    } catch {
      // exited while we looked
    }
  }
  return pids
}

export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

export async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return true
  return Promise.race([
    new Promise<boolean>((resolve) => child.once('exit', () => resolve(true))),
    // unref'd: a pending grace timer must not keep the process alive after the child is gone
    sleep(ms, undefined, { ref: false }).then(() => exited(child)),
  ])
}

/** SIGTERM, then SIGKILL after graceMs. */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (exited(child)) return
  child.kill('SIGTERM')
  if (await waitExit(child, graceMs)) return
  child.kill('SIGKILL')
  await waitExit(child, 5_000)
}

/** Environment for our node children: without the caller's loader hooks (test runner, tsx). */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra }
  delete env.NODE_OPTIONS
  return env
}

/** Write 3 to /proc/sys/vm/drop_caches after a sync: the next reads come from disk. */
export async function dropPageCache(): Promise<void> {
  await run('sync', [], { timeoutMs: 120_000 })
  await mustRun('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches'], { timeoutMs: 120_000 })
}

// ---- cleanup on signals ----------------------------------------------------------------------

const cleanups = new Set<() => Promise<void>>()
let signalledAt: number | undefined

/** Register an async cleanup; returns its deregistration. Run newest first on a signal. */
export function onCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn)
  return () => { cleanups.delete(fn) }
}

/** True once SIGINT/SIGTERM/SIGHUP arrived: callers stop starting new work and unwind. */
export function cancelled(): boolean {
  return signalledAt !== undefined
}

export class CancelledError extends Error {
  constructor() { super('interrupted by a signal') }
}

export function throwIfCancelled(): void {
  if (signalledAt !== undefined) throw new CancelledError()
}

async function runAllCleanups(): Promise<void> {
  // Until none are left: the main flow may register more while it unwinds.
  while (cleanups.size > 0) {
    const fn = [...cleanups].pop() as () => Promise<void>
    cleanups.delete(fn)
    try { await fn() } catch (e) { process.stderr.write(`cleanup failed: ${(e as Error).message}\n`) }
  }
}

function onSignal(sig: NodeJS.Signals): void {
  const now = performance.now()
  if (signalledAt !== undefined) {
    // link/wan-link's handler re-raises the first signal at once; a later one is the user's
    // second ^C: stop waiting.
    if (now - signalledAt > 1000) {
      process.stderr.write(`stargz bench: second ${sig}, exiting without waiting for cleanup\n`)
      process.exit(sig === 'SIGINT' ? 130 : 143)
    }
    return
  }
  signalledAt = now
  process.stderr.write(`\nstargz bench: ${sig}, tearing down…\n`)
  // Containers, daemons, mounts, registry, link: closing them makes every in-flight step fail, and
  // the main flow unwinds (see cancelled()). If it does not finish in time, exit anyway.
  void runAllCleanups().then(() => {
    setTimeout(() => {
      void runAllCleanups().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143))
    }, 60_000).unref()
  })
}

/**
 * For entry points: on SIGINT/SIGTERM/SIGHUP run every registered cleanup and let the main flow
 * unwind (it checks cancelled()); a second signal exits at once. Idempotent.
 */
export function installBenchSignalHandlers(): void {
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) if (!process.listeners(s).includes(onSignal)) process.on(s, onSignal)
}
