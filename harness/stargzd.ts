/**
 * Run the real daemon (src/bench/stargzd.ts's daemonCommand) as a child process for a test,
 * collecting its JSON log lines. close() sends SIGTERM (then SIGKILL) and is safe to call twice.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { unmountUnder, type Containerd } from './containerd.js'
import { daemonCommand } from '../src/bench/stargzd.js'

export const REPO = fileURLToPath(new URL('..', import.meta.url))

export interface LogLine { msg?: string; level?: number; [k: string]: unknown }

export interface StargzdProcess {
  child: ChildProcess
  logs: LogLine[]
  /** stderr and non-JSON stdout. */
  raw: string[]
  waitFor(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  kill9(): Promise<void>
  close(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** `command`: the daemon's command line (default: daemonCommand(); bench:restart runs the built dist/). */
export async function startStargzd(args: string[], env: NodeJS.ProcessEnv = {}, command: string[] = daemonCommand()): Promise<StargzdProcess> {
  // The same command line `stargz bench` uses (src/bench/stargzd.ts): one way to start the daemon.
  const [cmd, ...cmdArgs] = command as [string, ...string[]]
  const child = spawn(cmd, [...cmdArgs, ...args], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  })
  const logs: LogLine[] = []
  const raw: string[] = []
  const waiters: (() => void)[] = []
  const wake = (): void => { for (const w of waiters.splice(0)) w() }
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine)
    } catch {
      raw.push(line)
    }
    wake()
  })
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => { raw.push(line); wake() })
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { wake(); resolve({ code, signal }) })
  })
  const gone = (): boolean => child.exitCode !== null || child.signalCode !== null
  const waitFor = async (pred: (l: LogLine) => boolean, timeoutMs = 60_000): Promise<LogLine> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const hit = logs.find(pred)
      if (hit) return hit
      if (gone()) throw new Error(`stargzd exited (${child.exitCode ?? child.signalCode}) before the expected log line:\n${raw.join('\n')}\n${logs.map((l) => JSON.stringify(l)).join('\n')}`)
      if (Date.now() > deadline) throw new Error(`timed out waiting for a stargzd log line:\n${raw.join('\n')}\n${logs.slice(-20).map((l) => JSON.stringify(l)).join('\n')}`)
      await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(200)])
    }
  }
  let closing: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined
  return {
    child,
    logs,
    raw,
    waitFor,
    exited: () => exit,
    kill9: async () => {
      if (!gone()) child.kill('SIGKILL')
      await exit
    },
    close: () => {
      closing ??= (async () => {
        if (!gone()) {
          child.kill('SIGTERM')
          const r = await Promise.race([exit, sleep(20_000).then(() => undefined)])
          if (r) return r
          child.kill('SIGKILL')
        }
        return exit
      })()
      return closing
    },
  }
}

/** What `t.teardown` needs; tap's Test fits. */
interface Teardownable { teardown(fn: () => unknown): void }

/**
 * A scratch dir for one end-to-end test with stargzd on `<dir>/root` and `<dir>/s.sock`.
 * `start()` starts (or, after a kill -9, restarts) the daemon on the same root and waits for
 * `ready`; teardown stops every daemon started, unmounts what is left and removes the dir.
 */
export interface DaemonScratch {
  dir: string
  root: string
  sock: string
  start(extraArgs?: string[]): Promise<StargzdProcess>
}

export async function daemonScratch(t: Teardownable, prefix: string): Promise<DaemonScratch> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const root = join(dir, 'root')
  const sock = join(dir, 's.sock')
  const procs: StargzdProcess[] = []
  t.teardown(async () => {
    for (const p of procs) await p.close()
    await unmountUnder(dir)
    await rm(dir, { recursive: true, force: true })
  })
  return {
    dir, root, sock,
    async start(extraArgs = []) {
      const p = await startStargzd(['--root', root, '--address', sock, ...extraArgs])
      procs.push(p)
      await p.waitFor((l) => l.msg === 'ready')
      return p
    },
  }
}

/** `ctr` that returns stdout, or throws with its stderr and containerd's log tail. */
export function ctrOrThrow(ctrd: Containerd, context: () => string = () => ''): (args: string[]) => Promise<string> {
  return async (args) => {
    const r = await ctrd.ctr(args)
    if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} failed (${r.code}): ${r.stderr}\n${await ctrd.logTail()}\n${context()}`)
    return r.stdout
  }
}
