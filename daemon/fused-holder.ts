#!/usr/bin/env node
/**
 * stargz-fdholder: keeps a copy of every /dev/fuse connection fd of stargz-fused
 * (src/fuseproto/holder.ts), so stargz-fused can be killed, crash or be upgraded while running
 * containers' reads just wait. It reads nothing and does almost nothing, so it has no reason to
 * crash or to be upgraded often.
 *
 *   stargz-fdholder --socket /var/lib/stargzd/fused.sock.holder
 *
 * Started detached by stargz-fused when none answers, or by systemd (systemd/stargz-fdholder.service).
 * SIGTERM/SIGINT: close every held fd (connections no server holds then end: their mounts answer
 * ENOTCONN) and exit — the explicit way to let them go.
 */
import { rm, writeFile } from 'node:fs/promises'
import { errorMessage } from '../src/errors.js'
import { HolderServer } from '../src/fuseproto/holder.js'
import { createRootLogger } from '../src/log/logger.js'
import { notifyReady, notifyStopping } from './systemd.js'

async function main(argv: readonly string[]): Promise<number> {
  const i = argv.indexOf('--socket')
  const socket = i >= 0 ? argv[i + 1] : undefined
  if (socket === undefined || socket === '' || argv.includes('--help')) {
    process.stdout.write('usage: stargz-fdholder --socket PATH\n')
    return socket === undefined && !argv.includes('--help') ? 2 : 0
  }
  const log = createRootLogger({ level: 'info', format: 'json' }).child({ component: 'fdholder' })
  const pidFile = `${socket}.pid`
  const server = await HolderServer.listen(socket, log)
  await writeFile(pidFile, `${process.pid}\n`)
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    notifyStopping()
    log.info({ signal, held: server.size }, 'fdholder stopping')
    void server.close().finally(() => rm(pidFile, { force: true }).finally(() => process.exit(0)))
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGHUP', () => undefined)
  process.on('SIGPIPE', () => undefined)
  await notifyReady().catch(() => undefined)
  log.info({ socket, pid: process.pid }, 'fdholder ready')
  return -1
}

main(process.argv.slice(2)).then(
  (code) => { if (code >= 0) process.exit(code) },
  (e: unknown) => {
    process.stderr.write(`stargz-fdholder: ${errorMessage(e)}\n`)
    process.exit(1)
  },
)
