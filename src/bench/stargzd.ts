/**
 * Our daemon, stargzd, as a child process for one benchmark run: a fresh root (metadata, snapshot
 * mounts, chunk cache) in a temp dir, its gRPC socket there, the Prometheus endpoint on a unix
 * socket there (for `stargzd_fetched_bytes_total`), an empty hosts dir (loopback registries are
 * plain HTTP without one), background fetch on unless asked otherwise.
 *
 * From source (this file is .ts) it runs `node --import tsx daemon/stargzd.ts`; from dist/ it
 * runs dist/daemon/stargzd.js. The start-up benchmark runs the compiled daemon either way
 * (builtDaemonCommand).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { childEnv, exited, mustRun, stopChild, unmountUnder } from './proc.js'

export interface BenchStargzd {
  socket: string
  dir: string
  root: string
  /** `stargzd_fetched_bytes_total` from its metrics endpoint; undefined if it could not be read. */
  fetchedBytes(): Promise<number | undefined>
  /** Last log lines (JSON) and stderr, for error messages. */
  logTail(lines?: number): string
  close(): Promise<void>
}

export interface StargzdOptions {
  baseDir?: string
  /** Extra config.toml lines, e.g. "no_background_fetch = true". */
  extraConfig?: string[]
  logLevel?: 'debug' | 'info' | 'warn' | 'error'
  startTimeoutMs?: number
  /** argv prefix that runs the daemon; default daemonCommand() (this checkout). */
  command?: string[]
}

/** How to run the daemon next to this module: its .js, or its .ts through tsx from a checkout. */
export function daemonCommand(): string[] {
  return daemonCommandIn(undefined)
}

/**
 * The daemon of another source tree (e.g. an exported older commit with node_modules linked), so
 * `stargz bench --baseline-dir DIR` can measure a change's before and after in the same run.
 */
export function daemonCommandIn(dir: string | undefined): string[] {
  if (dir !== undefined) return [process.execPath, '--import', import.meta.resolve('tsx'), join(dir, 'daemon', 'stargzd.ts')]
  const self = import.meta.url
  const ts = self.endsWith('.ts')
  const script = fileURLToPath(new URL(`../../daemon/stargzd.${ts ? 'ts' : 'js'}`, self))
  return ts ? [process.execPath, '--import', import.meta.resolve('tsx'), script] : [process.execPath, script]
}

/**
 * The daemon as users run it: compiled JavaScript (dist/daemon/stargzd.js, what `npm run build`
 * emits and the installer and systemd unit start), not TypeScript through tsx. Measured
 * (issue #13): under tsx every module the first Prepare needs is compiled through the loader
 * hooks on first use, and each decode worker spent ~300 ms booting its own tsx before its first
 * chunk. From a checkout this builds dist/ once per process (`tsc -p tsconfig.build.json`,
 * ~15 s, before any timed step); from dist/ it is daemonCommand().
 */
export async function builtDaemonCommand(): Promise<string[]> {
  if (!import.meta.url.endsWith('.ts')) return daemonCommand()
  const root = fileURLToPath(new URL('../../', import.meta.url))
  building ??= mustRun(process.execPath, [fileURLToPath(import.meta.resolve('typescript/bin/tsc')), '-p', join(root, 'tsconfig.build.json')], { timeoutMs: 600_000 })
  await building
  return [process.execPath, join(root, 'dist', 'daemon', 'stargzd.js')]
}
let building: Promise<unknown> | undefined

/**
 * The daemon of a --baseline-dir tree: its dist/daemon/stargzd.js when it has been built there
 * (compiled, like ours), else its daemon/stargzd.ts through tsx.
 */
export function baselineDaemonCommand(dir: string): string[] {
  const built = join(dir, 'dist', 'daemon', 'stargzd.js')
  return existsSync(built) ? [process.execPath, built] : daemonCommandIn(dir)
}

function scrape(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/metrics', method: 'GET', timeout: 5_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d: string) => { body += d }).on('end', () => resolve(body))
    })
    req.on('timeout', () => req.destroy(new Error('metrics request timed out')))
    req.on('error', reject)
    req.end()
  })
}

export async function startBenchStargzd(opts: StargzdOptions = {}): Promise<BenchStargzd> {
  const dir = await mkdtemp(join(opts.baseDir ?? tmpdir(), 'sgzb-sgd-'))
  const root = join(dir, 'root')
  const socket = join(dir, 'stargzd.sock')
  const metrics = join(dir, 'metrics.sock')
  const hostsDir = join(dir, 'certs.d')
  const configPath = join(dir, 'config.toml')
  await mkdir(hostsDir, { recursive: true })
  await writeFile(configPath, [`metrics_address = ${JSON.stringify(metrics)}`, ...(opts.extraConfig ?? [])].join('\n') + '\n')

  const lines: string[] = []
  let ready = false
  let child: ChildProcess | undefined
  let closing: Promise<void> | undefined
  const logTail = (n = 30): string => lines.slice(-n).join('\n')
  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (child) await stopChild(child, 30_000)
      const left = await unmountUnder(dir)
      if (left.length > 0) throw new Error(`still mounted, so ${dir} was kept: ${left.join(', ')}`)
      await rm(dir, { recursive: true, force: true, maxRetries: 3 })
    })()
    return closing
  }

  try {
    const [cmd, ...rest] = (opts.command ?? daemonCommand()) as [string, ...string[]]
    // $STARGZ_BENCH_DAEMON_NODE_ARGS (space-separated) go to the daemon's node only, e.g.
    // "--cpu-prof --cpu-prof-dir=/tmp/p" to profile a bench run.
    const nodeArgs = (process.env.STARGZ_BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter(Boolean)
    const args = cmd === process.execPath ? [...nodeArgs, ...rest] : rest
    child = spawn(cmd, [...args, '--config', configPath, '--root', root, '--address', socket, '--log-level', opts.logLevel ?? 'info', '--hosts-dir', hostsDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: childEnv(),
    })
    const c = child
    const readyP = new Promise<void>((resolve, reject) => {
      const onLine = (line: string): void => {
        lines.push(line)
        if (lines.length > 400) lines.splice(0, lines.length - 200)
        if (!ready && line.includes('"msg":"ready"')) { ready = true; resolve() }
      }
      createInterface({ input: c.stdout as NodeJS.ReadableStream }).on('line', onLine)
      createInterface({ input: c.stderr as NodeJS.ReadableStream }).on('line', onLine)
      c.once('error', reject)
      c.once('exit', (code, sig) => { if (!ready) reject(new Error(`stargzd exited (${code ?? sig}) before it was ready:\n${logTail()}`)) })
    })
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      readyP,
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`stargzd not ready in time:\n${logTail()}`)), opts.startTimeoutMs ?? 60_000) }),
    ]).finally(() => clearTimeout(timer))
  } catch (e) {
    await close().catch(() => undefined)
    throw e
  }
  return {
    socket, dir, root, logTail, close,
    fetchedBytes: async () => {
      if (!child || exited(child)) return undefined
      try {
        const text = await scrape(metrics)
        const m = /^stargzd_fetched_bytes_total(?:\{[^}]*\})? ([0-9.eE+-]+)$/m.exec(text)
        return m ? Number(m[1]) : 0
      } catch {
        return undefined
      }
    },
  }
}

