/**
 * Starts the machine's real containerd (Debian's 1.6) for one test, fully private to it:
 *
 *   <dir>/containerd.sock(.ttrpc)  gRPC and ttrpc sockets
 *   <dir>/root, <dir>/state        containerd --root / --state (content, metadata, snapshots, bundles)
 *   <dir>/opt, <dir>/tmp           the opt plugin's dir and containerd's TMPDIR
 *   <dir>/fifo, <dir>/runc         pass as `ctr run --fifo-dir` / `--runc-root` (see runArgs)
 *   <dir>/config.toml, <dir>/containerd.log
 *
 * Two tests can run one each at once: sockets and dirs are per instance, the namespace is random
 * (runc's default root /run/containerd/runc/<namespace> and containerd's shim sockets, which are
 * hashed from the containerd address, therefore never collide either). The CRI plugin and the
 * snapshotters that need special filesystems are disabled to keep start-up light.
 *
 * close() removes containers and tasks, stops containerd (SIGTERM, then SIGKILL), kills shims
 * left running for this instance, unmounts anything still mounted under its dir and deletes it.
 * It is safe to call twice; register it with t.teardown.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { exited, mountsUnder, pidsMentioning, unmountUnder, waitExit } from '../../src/bench/proc.js'

export interface ProxyPlugin {
  /** Unix socket of the plugin's gRPC server. */
  address: string
  /** Plugin type; containerd 1.6 supports "snapshot" and "content". Default "snapshot". */
  type?: 'snapshot' | 'content'
}

export interface ContainerdOptions {
  /** `[proxy_plugins.<name>]` entries, e.g. `{ stargz: { address: sock } }`. */
  proxyPlugins?: Record<string, ProxyPlugin>
  /** Namespace the ctr helpers use; default a random `stargzd-<hex>`. */
  namespace?: string
  /** Extra TOML appended to the generated config. */
  extraConfig?: string
  /** containerd log level; default "info". */
  logLevel?: 'debug' | 'info' | 'warn' | 'error'
  /** How long to wait for the socket to answer; default 20 s. */
  startTimeoutMs?: number
  /** Parent of the instance's temp dir; default os.tmpdir(). Keep it short: sockets max 107 bytes. */
  baseDir?: string
}

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
  /** Default false: stdout as a utf-8 string. When true, stdout is latin1 so bytes survive. */
  binary?: boolean
}

export interface Containerd {
  /** gRPC socket path, for `--address` and for clients. */
  address: string
  root: string
  state: string
  dir: string
  namespace: string
  configPath: string
  logPath: string
  fifoDir: string
  runcRoot: string
  /** Arguments for `ctr run` that keep its fifos and runc state inside this instance's dir. */
  runArgs(): string[]
  ctr(args: string[], opts?: CommandOptions): Promise<CommandResult>
  ctrRemote(args: string[], opts?: CommandOptions): Promise<CommandResult>
  /** Last lines of containerd's log, for failure messages. */
  logTail(lines?: number): Promise<string>
  close(): Promise<void>
}

const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.internal.v1.tracing',
  'io.containerd.tracing.processor.v1.otlp',
]

function tomlString(s: string): string {
  return JSON.stringify(s) // a JSON string is a valid TOML basic string for paths and names
}

export function containerdConfig(p: {
  root: string
  state: string
  address: string
  opt: string
  logLevel: string
  proxyPlugins?: Record<string, ProxyPlugin>
  extraConfig?: string
}): string {
  const lines = [
    'version = 2',
    `root = ${tomlString(p.root)}`,
    `state = ${tomlString(p.state)}`,
    `disabled_plugins = [${DISABLED_PLUGINS.map(tomlString).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${tomlString(p.address)}`,
    '[ttrpc]',
    `  address = ${tomlString(p.address + '.ttrpc')}`,
    '[debug]',
    '  address = ""',
    `  level = ${tomlString(p.logLevel)}`,
    '[metrics]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${tomlString(p.opt)}`,
  ]
  for (const [name, plugin] of Object.entries(p.proxyPlugins ?? {})) {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`proxy plugin name ${JSON.stringify(name)} is not a bare TOML key`)
    lines.push(`[proxy_plugins.${name}]`, `  type = ${tomlString(plugin.type ?? 'snapshot')}`, `  address = ${tomlString(plugin.address)}`)
  }
  if (p.extraConfig) lines.push('', p.extraConfig)
  return lines.join('\n') + '\n'
}

export function run(cmd: string, args: string[], opts: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      {
        encoding: opts.binary ? 'latin1' : 'utf8',
        maxBuffer: 256 * 1024 * 1024,
        timeout: opts.timeoutMs ?? 120_000,
        killSignal: 'SIGKILL',
      },
      (err, stdout, stderr) => {
        let code = 0
        if (err) {
          const c = (err as NodeJS.ErrnoException & { code?: unknown }).code
          code = typeof c === 'number' ? c : -1
          if (typeof c === 'string') stderr = `${stderr}${stderr ? '\n' : ''}${cmd}: ${err.message}`
        }
        resolve({ stdout: String(stdout), stderr: String(stderr), code })
      },
    )
    if (opts.input !== undefined) child.stdin?.end(opts.input)
    else child.stdin?.end()
  })
}

// Mount bookkeeping and process helpers are shared with the benchmark harness (src/bench/proc.ts).
export { mountsUnder, unmountUnder }

export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  const dir = await mkdtemp(join(opts.baseDir ?? tmpdir(), 'stargzd-ctrd-'))
  const address = join(dir, 'containerd.sock')
  if (Buffer.byteLength(address + '.ttrpc') > 107) {
    await rm(dir, { recursive: true, force: true })
    throw new Error(`socket path ${address}.ttrpc is longer than 107 bytes; pass a shorter baseDir`)
  }
  const root = join(dir, 'root')
  const state = join(dir, 'state')
  const opt = join(dir, 'opt')
  const tmp = join(dir, 'tmp')
  const fifoDir = join(dir, 'fifo')
  const runcRoot = join(dir, 'runc')
  const configPath = join(dir, 'config.toml')
  const logPath = join(dir, 'containerd.log')
  const namespace = opts.namespace ?? `stargzd-${randomBytes(4).toString('hex')}`
  let child: ChildProcess | undefined
  let closing: Promise<void> | undefined

  const ctr = (args: string[], o?: CommandOptions) => run('ctr', ['--address', address, '--namespace', namespace, ...args], o)
  const ctrRemote = (args: string[], o?: CommandOptions) =>
    run('ctr-remote', ['--address', address, '--namespace', namespace, ...args], o)
  const logTail = async (lines = 40) => {
    try {
      return (await readFile(logPath, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n')
    } catch {
      return ''
    }
  }

  const close = (): Promise<void> => {
    closing ??= (async () => {
      const problems: string[] = []
      if (child && !exited(child)) {
        // Containers first: their shims outlive containerd by design.
        const tasks = await ctr(['tasks', 'ls', '-q'], { timeoutMs: 15_000 })
        for (const id of tasks.stdout.split('\n').filter(Boolean)) {
          await ctr(['tasks', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 15_000 })
          await ctr(['tasks', 'delete', '-f', id], { timeoutMs: 15_000 })
        }
        const containers = await ctr(['containers', 'ls', '-q'], { timeoutMs: 15_000 })
        for (const id of containers.stdout.split('\n').filter(Boolean)) {
          await ctr(['containers', 'delete', id], { timeoutMs: 15_000 })
        }
        child.kill('SIGTERM')
        if (!(await waitExit(child, 10_000))) {
          child.kill('SIGKILL')
          await waitExit(child, 5_000)
        }
      }
      // Shims started by this instance carry `-address <our socket>` on their command line.
      for (const pid of await pidsMentioning(address)) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
      const left = await unmountUnder(dir)
      if (left.length > 0) problems.push(`still mounted, so ${dir} was kept: ${left.join(', ')}`)
      else await rm(dir, { recursive: true, force: true, maxRetries: 3 })
      if (problems.length > 0) throw new Error(problems.join('; '))
    })()
    return closing
  }

  try {
    await Promise.all([root, state, opt, tmp, fifoDir, runcRoot].map((d) => mkdir(d, { recursive: true })))
    const config = containerdConfig({
      root,
      state,
      address,
      opt,
      logLevel: opts.logLevel ?? 'info',
      ...(opts.proxyPlugins ? { proxyPlugins: opts.proxyPlugins } : {}),
      ...(opts.extraConfig ? { extraConfig: opts.extraConfig } : {}),
    })
    await writeFile(configPath, config)
    const logFd = openSync(logPath, 'a')
    try {
      child = spawn('containerd', ['--config', configPath], {
        stdio: ['ignore', logFd, logFd],
        env: { ...process.env, TMPDIR: tmp },
      })
    } finally {
      closeSync(logFd)
    }
    const spawnError = new Promise<Error>((resolve) => child?.once('error', resolve))
    const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000)
    for (;;) {
      if (exited(child)) throw new Error(`containerd exited during start-up (${child.exitCode ?? child.signalCode}):\n${await logTail()}`)
      const r = await Promise.race([ctr(['version'], { timeoutMs: 5_000 }), spawnError])
      if (r instanceof Error) throw new Error(`could not start containerd: ${r.message}`)
      if (r.code === 0 && /Server:/.test(r.stdout)) break
      if (Date.now() > deadline) throw new Error(`containerd did not answer on ${address} in time:\n${r.stderr}\n${await logTail()}`)
      await sleep(100)
    }
  } catch (err) {
    await close().catch(() => undefined)
    throw err
  }

  return {
    address,
    root,
    state,
    dir,
    namespace,
    configPath,
    logPath,
    fifoDir,
    runcRoot,
    runArgs: () => ['--fifo-dir', fifoDir, '--runc-root', runcRoot],
    ctr,
    ctrRemote,
    logTail,
    close,
  }
}
