/**
 * The reference snapshotter (stargz-snapshotter's containerd-stargz-grpc, built by
 * ../shared/reference/build.sh or any binary given by path) as a child process for one benchmark
 * run, so `stargz bench` can measure it beside stargzd in the same invocation, on the same images
 * and link.
 *
 * It does not read hosts.toml: its own config names the registry as a plain-HTTP mirror of the
 * link's address. Stopped with SIGINT (it unmounts its FUSE layers on the way out); whatever is
 * still mounted under its root afterwards is unmounted before the dir is removed.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { exited, unmountUnder, waitExit } from './proc.js'

/** Where build.sh puts the binary by default. */
export const DEFAULT_REFERENCE_BIN = '/var/tmp/stargz-reference/bin/containerd-stargz-grpc'

export interface BenchReference {
  socket: string
  dir: string
  /** The `-grpc-log` file: one JSON line per snapshots call. */
  grpcLogPath: string
  logTail(lines?: number): Promise<string>
  close(): Promise<void>
}

export interface ReferenceOptions {
  bin?: string
  /** HOST:PORT of the registry as clients see it (the link). */
  registryHost: string
  baseDir?: string
  noBackgroundFetch?: boolean
  startTimeoutMs?: number
}

const q = (s: string): string => JSON.stringify(s)

export function referenceConfig(o: { registryHost: string; noBackgroundFetch?: boolean }): string {
  return [
    ...(o.noBackgroundFetch ? ['no_background_fetch = true'] : []),
    `[[resolver.host.${q(o.registryHost)}.mirrors]]`,
    `host = ${q(o.registryHost)}`,
    'insecure = true',
  ].join('\n') + '\n'
}

export async function startBenchReference(o: ReferenceOptions): Promise<BenchReference> {
  const bin = o.bin ?? DEFAULT_REFERENCE_BIN
  if (!existsSync(bin)) throw new Error(`reference daemon ${bin} not found; build it with bash ../shared/reference/build.sh`)
  const dir = await mkdtemp(join(o.baseDir ?? tmpdir(), 'sgzb-ref-'))
  const root = join(dir, 'root')
  const socket = join(dir, 'ref.sock')
  const configPath = join(dir, 'config.toml')
  const logPath = join(dir, 'ref.log')
  const grpcLogPath = join(dir, 'grpc.jsonl')
  await writeFile(configPath, referenceConfig(o))
  let child: ChildProcess | undefined
  let closing: Promise<void> | undefined
  const logTail = async (n = 30): Promise<string> => {
    try { return (await readFile(logPath, 'utf8')).trimEnd().split('\n').slice(-n).join('\n') } catch { return '' }
  }
  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (child && !exited(child)) {
        child.kill('SIGINT')
        if (!(await waitExit(child, 20_000))) {
          child.kill('SIGKILL')
          await waitExit(child, 5_000)
        }
      }
      const left = await unmountUnder(dir)
      if (left.length > 0) throw new Error(`still mounted, so ${dir} was kept: ${left.join(', ')}`)
      await rm(dir, { recursive: true, force: true, maxRetries: 3 })
    })()
    return closing
  }
  try {
    const fd = openSync(logPath, 'a')
    try {
      child = spawn(bin, ['-address', socket, '-root', root, '-config', configPath, '-log-level', 'info', '-grpc-log', grpcLogPath], { stdio: ['ignore', fd, fd] })
    } finally {
      closeSync(fd)
    }
    const deadline = Date.now() + (o.startTimeoutMs ?? 30_000)
    for (;;) {
      if (exited(child)) throw new Error(`reference daemon exited during start-up (${child.exitCode ?? child.signalCode}):\n${await logTail()}`)
      if ((await logTail(50)).includes('refd serving') && existsSync(socket)) break
      if (Date.now() > deadline) throw new Error(`reference daemon not ready in time:\n${await logTail()}`)
      await sleep(50)
    }
  } catch (e) {
    await close().catch(() => undefined)
    throw e
  }
  return { socket, dir, grpcLogPath, logTail, close }
}
