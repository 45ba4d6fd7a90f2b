/**
 * A private containerd (the machine's containerd 1.6) for one benchmark run:
 *
 *   <dir>/containerd.sock(.ttrpc), <dir>/root, <dir>/state, <dir>/opt, <dir>/tmp, <dir>/fifo
 *   <dir>/config.toml, <dir>/containerd.log
 *
 * Every run gets a fresh instance (fresh root: no images, content, snapshots or containers left
 * from an earlier run), optionally with `[proxy_plugins.stargz]` pointing at a stargzd socket.
 * The namespace is random, so runc's default root (/run/containerd/runc/<namespace>) and the
 * shims' sockets never collide with another instance.
 *
 * With `cri`, containerd's CRI plugin is on as well, on the same socket: `snapshotter = "stargz"`
 * and `disable_snapshot_annotations = false` (so Prepare carries the containerd.io/snapshot/cri.*
 * labels), the given sandbox (pause) image, registry hosts from a hosts.toml dir, and CNI dirs
 * inside the instance's dir with nothing in them: only host-network pods can run, which is all
 * the tests need. CRI keeps its containers in the "k8s.io" namespace; close() cleans it too.
 *
 * close(): kill and delete tasks and containers, remove images, stop containerd, kill shims left
 * for this instance, unmount what is still mounted under the dir, delete the dir. Idempotent.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { exited, pidsMentioning, run, stopChild, unmountUnder, type CommandOptions, type CommandResult } from './proc.js'

/** The CRI plugin's settings (see the header). */
export interface CriOptions {
  /** `sandbox_image`: a pause image the test pushed to its registry. */
  sandboxImage: string
  /** `[registry] config_path`: a containerd hosts.toml dir (<host>/hosts.toml). */
  hostsDir?: string
  /** Snapshotter for CRI pulls and containers; default "stargz". */
  snapshotter?: string
}

/** The namespace containerd's CRI plugin keeps its images, containers and tasks in. */
export const CRI_NAMESPACE = 'k8s.io'

export interface BenchContainerd {
  address: string
  dir: string
  namespace: string
  fifoDir: string
  logPath: string
  ctr(args: string[], opts?: CommandOptions): Promise<CommandResult>
  /** `ctr`'s argv prefix (binary and global flags) for callers that spawn it themselves. */
  ctrArgv(): [string, string[]]
  ctrRemote(args: string[], opts?: CommandOptions): Promise<CommandResult>
  ctrRemoteArgv(): [string, string[]]
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

const q = (s: string): string => JSON.stringify(s) // a JSON string is a valid TOML basic string here

function config(p: { root: string; state: string; address: string; opt: string; stargzSocket?: string; cri?: CriOptions; cniDir: string }): string {
  const disabled = p.cri ? DISABLED_PLUGINS.filter((x) => x !== 'io.containerd.grpc.v1.cri') : DISABLED_PLUGINS
  const lines = [
    'version = 2',
    `root = ${q(p.root)}`,
    `state = ${q(p.state)}`,
    `disabled_plugins = [${disabled.map(q).join(', ')}]`,
    '[grpc]', `  address = ${q(p.address)}`,
    '[ttrpc]', `  address = ${q(p.address + '.ttrpc')}`,
    '[debug]', '  address = ""', '  level = "info"',
    '[metrics]', '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]', `  path = ${q(p.opt)}`,
  ]
  if (p.stargzSocket) lines.push('[proxy_plugins.stargz]', '  type = "snapshot"', `  address = ${q(p.stargzSocket)}`)
  if (p.cri) {
    const cri = '[plugins."io.containerd.grpc.v1.cri"'
    lines.push(
      `${cri}]`, `  sandbox_image = ${q(p.cri.sandboxImage)}`,
      // The streaming server (exec/attach/port-forward) on loopback, any free port.
      '  stream_server_address = "127.0.0.1"', '  stream_server_port = "0"',
      // The sandbox asks for oom_score_adj -998; lowering it below our own needs CAP_SYS_RESOURCE,
      // which a test machine that is itself a container may lack (runc then fails in nsexec).
      '  restrict_oom_score_adj = true',
      `${cri}.containerd]`, `  snapshotter = ${q(p.cri.snapshotter ?? 'stargz')}`, '  disable_snapshot_annotations = false',
      '  default_runtime_name = "runc"',
      `${cri}.containerd.runtimes.runc]`, '  runtime_type = "io.containerd.runc.v2"',
      `${cri}.cni]`, `  bin_dir = ${q(join(p.cniDir, 'bin'))}`, `  conf_dir = ${q(join(p.cniDir, 'conf'))}`,
    )
    if (p.cri.hostsDir) lines.push(`${cri}.registry]`, `  config_path = ${q(p.cri.hostsDir)}`)
  }
  return lines.join('\n') + '\n'
}

export async function startBenchContainerd(opts: { stargzSocket?: string; baseDir?: string; startTimeoutMs?: number; cri?: CriOptions } = {}): Promise<BenchContainerd> {
  const dir = await mkdtemp(join(opts.baseDir ?? tmpdir(), 'sgzb-ctrd-'))
  const address = join(dir, 'containerd.sock')
  if (Buffer.byteLength(address + '.ttrpc') > 107) {
    await rm(dir, { recursive: true, force: true })
    throw new Error(`socket path ${address}.ttrpc is longer than 107 bytes; use a shorter base dir`)
  }
  const root = join(dir, 'root')
  const state = join(dir, 'state')
  const opt = join(dir, 'opt')
  const tmp = join(dir, 'tmp')
  const fifoDir = join(dir, 'fifo')
  const cniDir = join(dir, 'cni')
  const configPath = join(dir, 'config.toml')
  const logPath = join(dir, 'containerd.log')
  const namespace = `sgzb-${randomBytes(4).toString('hex')}`
  const global = ['--address', address, '--namespace', namespace]
  let child: ChildProcess | undefined
  let closing: Promise<void> | undefined

  const ctr = (args: string[], o?: CommandOptions): Promise<CommandResult> => run('ctr', [...global, ...args], o)
  const ctrRemote = (args: string[], o?: CommandOptions): Promise<CommandResult> => run('ctr-remote', [...global, ...args], o)
  const logTail = async (lines = 40): Promise<string> => {
    try { return (await readFile(logPath, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n') } catch { return '' }
  }

  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (child && !exited(child)) {
        const o = { timeoutMs: 30_000 }
        for (const ns of opts.cri ? [namespace, CRI_NAMESPACE] : [namespace]) {
          const inNs = (args: string[], oo: CommandOptions): Promise<CommandResult> => run('ctr', ['--address', address, '--namespace', ns, ...args], oo)
          const tasks = await inNs(['tasks', 'ls', '-q'], o)
          for (const id of tasks.stdout.split('\n').filter(Boolean)) {
            await inNs(['tasks', 'kill', '-s', 'SIGKILL', id], o)
            await inNs(['tasks', 'delete', '-f', id], o)
          }
          const containers = await inNs(['containers', 'ls', '-q'], o)
          for (const id of containers.stdout.split('\n').filter(Boolean)) await inNs(['containers', 'delete', id], o)
          const images = await inNs(['images', 'ls', '-q'], o)
          const refs = images.stdout.split('\n').filter(Boolean)
          if (refs.length > 0) await inNs(['images', 'rm', '--sync', ...refs], { timeoutMs: 120_000 })
        }
        await stopChild(child, 10_000)
      }
      // Shims started by this instance carry `-address <our socket>` on their command line.
      for (const pid of await pidsMentioning(address)) {
        try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
      }
      const left = await unmountUnder(dir)
      if (left.length > 0) throw new Error(`still mounted, so ${dir} was kept: ${left.join(', ')}`)
      await rm(dir, { recursive: true, force: true, maxRetries: 3 })
      // runc's state for our namespace (default --root of the runc v2 shim).
      await rm(join('/run/containerd/runc', namespace), { recursive: true, force: true })
    })()
    return closing
  }

  try {
    await Promise.all([root, state, opt, tmp, fifoDir, join(cniDir, 'bin'), join(cniDir, 'conf')].map((d) => mkdir(d, { recursive: true })))
    await writeFile(configPath, config({ root, state, address, opt, cniDir, ...(opts.stargzSocket ? { stargzSocket: opts.stargzSocket } : {}), ...(opts.cri ? { cri: opts.cri } : {}) }))
    const logFd = openSync(logPath, 'a')
    try {
      child = spawn('containerd', ['--config', configPath], { stdio: ['ignore', logFd, logFd], env: { ...process.env, TMPDIR: tmp } })
    } finally {
      closeSync(logFd)
    }
    const spawnError = new Promise<Error>((resolve) => child?.once('error', resolve))
    const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000)
    for (;;) {
      if (exited(child)) throw new Error(`containerd exited during start-up (${child.exitCode ?? child.signalCode}):\n${await logTail()}`)
      const r = await Promise.race([ctr(['version'], { timeoutMs: 5_000 }), spawnError])
      if (r instanceof Error) throw new Error(`could not start containerd: ${r.message}`)
      if (r.code === 0 && /Server:/.test(r.stdout)) break
      if (Date.now() > deadline) throw new Error(`containerd did not answer on ${address} in time:\n${r.stderr}\n${await logTail()}`)
      await sleep(100)
    }
  } catch (e) {
    await close().catch(() => undefined)
    throw e
  }
  return {
    address, dir, namespace, fifoDir, logPath, ctr, ctrRemote, logTail, close,
    ctrArgv: () => ['ctr', [...global]],
    ctrRemoteArgv: () => ['ctr-remote', [...global]],
  }
}
