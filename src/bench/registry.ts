/**
 * The benchmark's registry: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, storage in
 * a temp dir, no auth, no TLS. Clients under test reach it only through the WAN link; images are
 * pushed to it directly.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { exited, stopChild } from './proc.js'

export interface BenchRegistry {
  host: string
  port: number
  /** "127.0.0.1:PORT" */
  address: string
  dir: string
  close(): Promise<void>
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}

export async function startBenchRegistry(opts: { baseDir?: string } = {}): Promise<BenchRegistry> {
  const dir = await mkdtemp(join(opts.baseDir ?? tmpdir(), 'sgzb-registry-'))
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
  try {
    const port = await freePort()
    const address = `127.0.0.1:${port}`
    const configPath = join(dir, 'config.yml')
    await writeFile(configPath, [
      'version: 0.1',
      'log:', '  level: error', '  accesslog:', '    disabled: true',
      'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'data')}`, '  delete:', '    enabled: true',
      'http:', `  addr: ${address}`, `  secret: ${randomBytes(16).toString('hex')}`,
    ].join('\n') + '\n')
    const fd = openSync(logPath, 'a')
    try {
      child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', fd, fd] })
    } finally {
      closeSync(fd)
    }
    const c = child
    const spawnError = new Promise<Error>((resolve) => c.once('error', resolve))
    for (let i = 0; ; i++) {
      if (exited(c)) throw new Error(`docker-registry exited (${c.exitCode ?? c.signalCode}): ${await readFile(logPath, 'utf8').catch(() => '')}`)
      const ok = await Promise.race([
        new Promise<boolean>((resolve) => {
          const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
          s.on('error', () => resolve(false))
        }),
        spawnError.then((e) => { throw new Error(`could not start docker-registry: ${e.message}`) }),
      ])
      if (ok) return { host: '127.0.0.1', port, address, dir, close }
      if (i > 300) throw new Error(`docker-registry did not listen on ${address}: ${await readFile(logPath, 'utf8').catch(() => '')}`)
      await sleep(50)
    }
  } catch (e) {
    await close().catch(() => undefined)
    throw e
  }
}
