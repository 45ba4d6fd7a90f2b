/**
 * The one docker-registry launcher: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1,
 * storage in a temp dir, no auth and no TLS unless the caller adds config lines (the test
 * harness adds htpasswd, token auth, TLS or `proxy:` through `configure`). `stargz bench` uses it
 * as is; clients under test reach it only through the WAN link.
 *
 * The port: the registry listens on 127.0.0.1:0 and we read the port it bound from its own
 * "listening on 127.0.0.1:N" log line. Picking a free port first and handing it over would race
 * with every other process on the machine that binds port 0 in between.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { exited, stopChild } from './proc.js'

export interface BenchRegistry {
  host: string
  port: number
  /** "127.0.0.1:PORT" */
  address: string
  /** Its temp dir (config, data, log); removed by close(). */
  dir: string
  tls: boolean
  /** Its log (with `accessLog`, one combined-format line per request). */
  logPath: string
  close(): Promise<void>
}

/** YAML lines a caller adds to the registry's config. */
export interface RegistryConfigLines {
  /** Indented two spaces under `http:` (e.g. `tls:` with its two files). */
  http?: string[]
  /** Top-level sections (`auth:`, `proxy:`). */
  top?: string[]
}

export interface BenchRegistryOptions {
  /** Parent of the temp dir; default os.tmpdir(). */
  baseDir?: string
  /** Prefix of the temp dir's name. */
  prefix?: string
  /** Called with the temp dir before the registry starts: write files there, return config lines. */
  configure?: (dir: string) => Promise<RegistryConfigLines> | RegistryConfigLines
  /** Log every request (combined log format) to logPath; `stargz bench` counts blob requests with it. */
  accessLog?: boolean
  /** How long to wait for the "listening on" line; default 15 s. */
  startTimeoutMs?: number
}

const LISTENING = /listening on 127\.0\.0\.1:(\d+)/

export async function startBenchRegistry(opts: BenchRegistryOptions = {}): Promise<BenchRegistry> {
  const dir = await mkdtemp(join(opts.baseDir ?? tmpdir(), opts.prefix ?? 'sgzb-registry-'))
  let child: ChildProcess | undefined
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (child) await stopChild(child, 5_000)
      await rm(dir, { recursive: true, force: true, maxRetries: 3 })
    })()
    return closing
  }
  const logPath = join(dir, 'registry.log')
  const logText = (): Promise<string> => readFile(logPath, 'utf8').catch(() => '')
  try {
    const extra = (await opts.configure?.(dir)) ?? {}
    const configPath = join(dir, 'config.yml')
    await writeFile(configPath, [
      'version: 0.1',
      // info, not error: the "listening on" line is how we learn the port. Access logs stay off.
      'log:', '  level: info', '  accesslog:', `    disabled: ${opts.accessLog ? 'false' : 'true'}`,
      'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'data')}`, '  delete:', '    enabled: true',
      'http:', '  addr: 127.0.0.1:0', `  secret: ${randomBytes(16).toString('hex')}`, ...(extra.http ?? []),
      ...(extra.top ?? []),
    ].join('\n') + '\n')
    const fd = openSync(logPath, 'a')
    try {
      child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', fd, fd] })
    } finally {
      closeSync(fd)
    }
    const c = child
    let spawnError: Error | undefined
    c.once('error', (e) => { spawnError = e })
    const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000)
    for (;;) {
      if (spawnError) throw new Error(`could not start docker-registry: ${spawnError.message}`)
      const text = await logText()
      const m = LISTENING.exec(text)
      if (m) {
        const port = Number(m[1])
        return { host: '127.0.0.1', port, address: `127.0.0.1:${port}`, dir, tls: (extra.http ?? []).some((l) => l.trim() === 'tls:'), logPath, close }
      }
      if (exited(c)) throw new Error(`docker-registry exited (${c.exitCode ?? c.signalCode}): ${text}`)
      if (Date.now() > deadline) throw new Error(`docker-registry did not report its address within ${opts.startTimeoutMs ?? 15_000} ms: ${text}`)
      await sleep(25)
    }
  } catch (e) {
    await close().catch(() => undefined)
    throw e
  }
}
