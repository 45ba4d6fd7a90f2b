#!/usr/bin/env node
/**
 * stargz-fused: the long-lived FUSE-serving half of stargzd. It owns the registry client, the
 * chunk cache and every lazy layer mount, and serves their reads; stargzd (gRPC, metadata) asks it
 * to mount, check and unmount over a unix socket (src/fused/protocol.ts).
 *
 * It takes the same arguments as stargzd (same config file) plus --fuse-manager SOCKET. It is not
 * stopped by a stop, crash or upgrade of stargzd: started by stargzd it runs in its own session
 * (setsid), under systemd it is its own unit. SIGTERM/SIGINT here means "really stop serving":
 * stop listening, unmount every layer (busy ones lazily), exit 0.
 *
 * FUSE is served by our own protocol code (src/fuseproto) with every connection fd copied into
 * the fd holder (daemon/fused-holder.ts), so this process may die: kill -9, crash, or an upgrade
 * (SIGUSR2: stop, leave every layer mounted, exit 75 — systemd's RestartForceExitStatus starts
 * the new build) — and the next stargz-fused adopts each held connection, asks the kernel to
 * resend what was lost, and serves it again. Reads in containers wait meanwhile.
 * $STARGZ_FUSED_BACKEND=native serves through fuse-native instead (no crash survival).
 */
import './threadpool.js'
import { rm, writeFile } from 'node:fs/promises'
import { loadConfig } from '../src/config/load.js'
import { errorMessage } from '../src/errors.js'
import { FusedServer } from '../src/fused/server.js'
import { createRootLogger } from '../src/log/logger.js'
import { NO_METRICS } from '../src/metrics/hooks.js'
import { USAGE, parseArgs } from './args.js'
import { createFileSystem, type FileSystemHandle } from './filesystem-factory.js'
import { fdHolderSocket, fusedPidFile, fusedSocket } from './fused-paths.js'
import { attachOrStartHolder } from './fused-launch.js'
import { ProtoBackend } from '../src/fuseproto/backend.js'
import { fuseFdAvailable } from '../src/fuseproto/native.js'
import type { RemoteLayerInfo } from '../src/snapshot/filesystem.js'
import { isMounted, unmountPath } from '../src/fuse/unmount.js'

/** Exit status of a hand-off (SIGUSR2): "start me again", as EX_TEMPFAIL. */
export const HANDOFF_EXIT = 75
import { notifyReady, notifyStopping } from './systemd.js'

async function main(argv: readonly string[]): Promise<number> {
  let args
  try {
    args = parseArgs(argv)
  } catch (e) {
    process.stderr.write(`stargz-fused: ${errorMessage(e)}\n`)
    return 2
  }
  if (args.help) {
    process.stdout.write(`${USAGE.replace('stargzd', 'stargz-fused')}\n`)
    return 0
  }
  let cfg
  try {
    cfg = await loadConfig(args.config, args.overrides)
  } catch (e) {
    process.stderr.write(`stargz-fused: ${errorMessage(e)}\n`)
    return 2
  }
  const socket = fusedSocket(args.fuseManager ?? 'default', cfg.root)
  const root = createRootLogger({ level: cfg.log_level, format: cfg.log_format })
  const log = root.child({ component: 'fused' })

  let fsHandle: FileSystemHandle | undefined
  let backend: ProtoBackend | undefined
  let server: FusedServer | undefined
  const pidFile = fusedPidFile(socket)
  const release = async (): Promise<void> => {
    await server?.close().catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'closing fused socket'))
    // Held connections not re-served yet are not in the FileSystem's table: unmount them here.
    for (const mp of (await server?.abortRestores()) ?? []) {
      await unmountPath(mp).catch((e: unknown) => log.warn({ mountpoint: mp, err: errorMessage(e) }, 'unmounting a held layer at stop'))
      await backend?.drop(mp)
    }
    // Unmounts every layer this process serves: an explicit stop of the FUSE side is the one
    // event on which running containers lose their lazy layers.
    await fsHandle?.close().catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'closing filesystem'))
    await rm(pidFile, { force: true }).catch(() => undefined)
  }
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info({ signal, mounts: server?.mounts.length ?? 0 }, 'fused shutting down')
    notifyStopping()
    void release().then(() => {
      log.info('fused stopped')
      process.exit(0)
    })
  }
  // Upgrade / planned restart: leave every layer mounted and held, exit; the next one adopts them.
  const handoff = (): void => {
    if (stopping) return
    stopping = true
    log.info({ mounts: server?.mounts.length ?? 0 }, 'fused handing off: layers stay mounted for the next stargz-fused')
    notifyStopping()
    void (server?.close() ?? Promise.resolve()).catch(() => undefined).then(() => rm(pidFile, { force: true })).finally(() => process.exit(HANDOFF_EXIT))
  }
  process.on('SIGUSR2', () => { if (backend) handoff(); else log.warn('SIGUSR2 ignored: the fuse-native backend cannot hand off its mounts') })
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  // Its stdio may be a file or nothing at all once the daemon that started it is gone.
  process.on('SIGPIPE', () => undefined)
  process.on('SIGHUP', () => undefined)

  try {
    const want = process.env.STARGZ_FUSED_BACKEND ?? 'proto'
    if (want === 'proto' && fuseFdAvailable()) {
      const holder = await attachOrStartHolder(fdHolderSocket(socket), log)
      backend = new ProtoBackend({ log: root.child({ component: 'fuseproto' }), holder })
    } else if (want === 'proto') {
      log.warn('native/fusefd.node does not load (scripts/build-native.sh): serving with fuse-native, mounts will not survive a crash of stargz-fused')
    }
    fsHandle = await createFileSystem(cfg, root.child({ component: 'fs' }), NO_METRICS, undefined, backend)
    if (!fsHandle.lazy) log.warn('lazy mounts are unavailable on this host')
    server = await FusedServer.listen({ socket, fs: fsHandle.fs, log, ...(backend ? { held: backend } : {}) })
    if (backend) {
      // Connections an earlier stargz-fused left in the holder: serve them again (in the background:
      // a layer whose registry is down keeps its reads waiting and is retried).
      const held = await backend.loadHeld()
      for (const h of held) {
        const layer = (h.meta as { layer?: RemoteLayerInfo }).layer
        if (layer === undefined || !(await isMounted(h.key).catch(() => false))) {
          log.info({ mountpoint: h.key }, 'held connection no longer mounted (or undescribed); dropping it')
          await backend.drop(h.key)
          continue
        }
        void server.restore(h.key, layer).catch((e: unknown) => log.info({ mountpoint: h.key, err: errorMessage(e) }, 'held connection not restored'))
      }
      log.info({ held: held.length, backend: 'proto' }, 'fused adopting held connections')
    }
    await writeFile(pidFile, `${process.pid}\n`)
    await notifyReady().catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'systemd readiness notification failed'))
    log.info({ socket, pid: process.pid }, 'fused ready')
    return -1
  } catch (e) {
    log.fatal({ err: errorMessage(e) }, 'fused start-up failed')
    await release()
    return 1
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code)
  },
  (e: unknown) => {
    process.stderr.write(`stargz-fused: ${errorMessage(e)}\n`)
    process.exit(1)
  },
)
