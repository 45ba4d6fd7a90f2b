/**
 * stargzd's side of the FUSE split: attach to a running stargz-fused, or start one.
 *
 * A stargz-fused we start runs detached — its own session and process group (setsid), stdio to a
 * log file beside its socket, not waited for — so SIGTERM/SIGKILL of stargzd, of its process
 * group, or a Ctrl-C in its terminal does not reach it. Under systemd it is its own unit
 * (systemd/stargz-fused.service) and is already running when stargzd starts.
 */
import { spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { UnavailableError, errorMessage } from '../src/errors.js'
import { FusedClient } from '../src/fused/client.js'
import type { HelloResult } from '../src/fused/protocol.js'
import { HolderClient } from '../src/fuseproto/holder.js'
import { fusedLogFile } from './fused-paths.js'

export interface Attached { client: FusedClient; hello: HelloResult; started: boolean }

/** How to run stargz-fused next to this module: its .js, or its .ts through tsx from a checkout. */
export function fusedCommand(): string[] {
  const self = import.meta.url
  const ts = self.endsWith('.ts')
  const script = fileURLToPath(new URL(`./stargz-fused.${ts ? 'ts' : 'js'}`, self))
  return ts ? [process.execPath, '--import', import.meta.resolve('tsx'), script] : [process.execPath, script]
}

/** How to run the fd holder next to this module (as fusedCommand). */
export function holderCommand(): string[] {
  const self = import.meta.url
  const ts = self.endsWith('.ts')
  const script = fileURLToPath(new URL(`./fused-holder.${ts ? 'ts' : 'js'}`, self))
  return ts ? [process.execPath, '--import', import.meta.resolve('tsx'), script] : [process.execPath, script]
}

/**
 * Attach to the fd holder at `socket`, or start one detached (own session, stdio to
 * `<socket>.log`): it must outlive stargz-fused, which is the point of it.
 */
export async function attachOrStartHolder(socket: string, log: Logger, startTimeoutMs = 30_000): Promise<HolderClient> {
  const client = new HolderClient(socket)
  try {
    await client.hello()
    return client
  } catch (e) {
    log.info({ socket, why: errorMessage(e) }, 'no fd holder answering; starting one')
  }
  const [cmd, ...cmdArgs] = holderCommand() as [string, ...string[]]
  const out = openSync(`${socket}.log`, 'a', 0o600)
  try {
    const child = spawn(cmd, [...cmdArgs, '--socket', socket], { detached: true, stdio: ['ignore', out, out], env: process.env })
    child.unref()
    log.info({ pid: child.pid }, 'started fd holder')
  } finally {
    closeSync(out)
  }
  const deadline = Date.now() + startTimeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      await client.hello()
      return client
    } catch (e) {
      last = e
      await sleep(50)
    }
  }
  throw new UnavailableError(`fd holder did not answer on ${socket} within ${startTimeoutMs} ms: ${errorMessage(last)}`)
}

export async function attachOrStartFused(socket: string, argv: readonly string[], log: Logger, startTimeoutMs = 60_000): Promise<Attached> {
  const client = new FusedClient(socket)
  try {
    return { client, hello: await client.hello(), started: false }
  } catch (e) {
    log.info({ socket, why: errorMessage(e) }, 'no stargz-fused answering; starting one')
  }
  const [cmd, ...cmdArgs] = fusedCommand() as [string, ...string[]]
  const out = openSync(fusedLogFile(socket), 'a', 0o600)
  try {
    const child = spawn(cmd, [...cmdArgs, ...argv], { detached: true, stdio: ['ignore', out, out], env: process.env })
    child.unref()
    log.info({ pid: child.pid, log: fusedLogFile(socket) }, 'started stargz-fused')
  } finally {
    closeSync(out)
  }
  const deadline = Date.now() + startTimeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      return { client, hello: await client.hello(), started: true }
    } catch (e) {
      last = e
      await sleep(50)
    }
  }
  throw new UnavailableError(`stargz-fused did not answer on ${socket} within ${startTimeoutMs} ms: ${errorMessage(last)} (see ${fusedLogFile(socket)})`)
}
