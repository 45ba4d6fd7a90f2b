#!/usr/bin/env node
/**
 * stargzd: containerd proxy snapshotter with lazy eStargz mounts.
 *
 * Start-up: config → logger → metrics → FileSystem (./filesystem-factory.ts) → snapshotter (open
 * store, detach stale mounts) → gRPC on the unix socket → systemd readiness, while restore
 * re-mounts remote snapshots in the background (retrying failures; calls on a layer not back yet
 * wait for it) and then sweeps orphans.
 * SIGTERM/SIGINT: stop accepting calls, let in-flight ones finish, stop restore (its mounts in
 * progress settle), unmount, close the store, exit 0.
 */
import './threadpool.js'
import { configWarnings, loadConfig } from '../src/config/load.js'
import { startImageServiceProxy, type ImageServiceProxy } from '../src/cri/image-proxy.js'
import { ChainedCredentials, CriKeychain } from '../src/cri/keychain.js'
import { DockerConfigCredentials, type CredentialProvider } from '../src/registry/credentials.js'
import { errorMessage } from '../src/errors.js'
import { startSnapshotServer, type SnapshotServer } from '../src/grpc/server.js'
import { createRootLogger } from '../src/log/logger.js'
import { NO_METRICS, type MetricsHooks } from '../src/metrics/hooks.js'
import { createMetrics } from '../src/metrics/metrics.js'
import { startMetricsServer, type MetricsServer } from '../src/metrics/server.js'
import { Snapshotter } from '../src/snapshot/snapshotter.js'
import { VERSION } from '../src/cli/version.js'
import { USAGE, parseArgs } from './args.js'
import { createFileSystem, type FileSystemHandle } from './filesystem-factory.js'
import { notifyReady, notifyStopping } from './systemd.js'
import { attachOrStartFused } from './fused-launch.js'
import { fusedSocket } from './fused-paths.js'
import type { FusedClient } from '../src/fused/client.js'
import { mkdir } from 'node:fs/promises'

async function main(argv: readonly string[]): Promise<number> {
  let args
  try {
    args = parseArgs(argv)
  } catch (e) {
    process.stderr.write(`stargzd: ${errorMessage(e)}\n`)
    return 2
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  if (args.version) {
    process.stdout.write(`stargzd ${VERSION}\n`)
    return 0
  }
  let cfg
  try {
    cfg = await loadConfig(args.config, args.overrides)
  } catch (e) {
    process.stderr.write(`stargzd: ${errorMessage(e)}\n`)
    return 2
  }
  const root = createRootLogger({ level: cfg.log_level, format: cfg.log_format })
  const log = root.child({ component: 'daemon' })
  // Reference config keys we accept but do not implement: once each, at start.
  for (const w of configWarnings(cfg)) log.warn({ key: w.key, instead: w.instead }, 'config-key-not-implemented')

  // Owned resources, released in reverse order of acquisition, once.
  let metricsServer: MetricsServer | undefined
  let fsHandle: FileSystemHandle | undefined
  let fused: FusedClient | undefined
  let snapshotter: Snapshotter | undefined
  let server: SnapshotServer | undefined
  let criProxy: ImageServiceProxy | undefined
  let released: Promise<void> | undefined
  /** Lets restore's background work begin (after ready, or at release if start-up never got there). */
  let served: (() => void) | undefined
  const release = (): Promise<void> => {
    released ??= (async () => {
      served?.()
      await criProxy?.close().catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'closing CRI image service proxy'))
      await server?.close({ graceMs: cfg.shutdown_timeout_sec * 1000 }).catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'closing gRPC server'))
      // With stargz-fused, layers stay mounted and served past this daemon's exit.
      fused?.detach()
      await snapshotter?.close().catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'closing snapshotter'))
      await fsHandle?.close().catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'closing filesystem'))
      await metricsServer?.close().catch(() => undefined)
    })()
    return released
  }

  // A signal during start-up (e.g. while restore is re-mounting layers) does not race it: it
  // stops restore from starting new mounts, waits for start-up to settle — so every mount made
  // is known to the snapshotter — and only then releases everything. The process exits once
  // the release is done, never in the middle of unmounts.
  const startupStop = new AbortController()
  const startup = (async (): Promise<number> => {
    try {
      let hooks: MetricsHooks = NO_METRICS
      if (!cfg.no_prometheus) {
        const m = createMetrics()
        hooks = m.hooks
        if (cfg.metrics_address !== '') {
          metricsServer = await startMetricsServer(cfg.metrics_address, m.registry)
          log.info({ address: metricsServer.address }, 'metrics endpoint listening')
        }
      }
      // [cri_keychain]: credentials from kubelet's PullImage calls first, then the Docker config.
      const keychain = cfg.cri_keychain.enable_keychain ? new CriKeychain({ ttlMs: cfg.cri_keychain.credential_ttl_sec * 1000 }) : undefined
      const credentials: CredentialProvider | undefined = keychain ? new ChainedCredentials([keychain, new DockerConfigCredentials()]) : undefined
      if (args.fuseManager !== undefined) {
        const socket = fusedSocket(args.fuseManager, cfg.root)
        await mkdir(cfg.root, { recursive: true, mode: 0o700 })
        const a = await attachOrStartFused(socket, argv, log)
        fused = a.client
        const client = a.client
        fsHandle = { fs: client, lazy: true, close: () => client.close() }
        log.info({ socket, pid: a.hello.pid, since: a.hello.startedAt, started: a.started }, 'attached to stargz-fused')
      } else {
        fsHandle = await createFileSystem(cfg, root.child({ component: 'fs' }), hooks, credentials)
      }
      if (!fsHandle.lazy) log.warn('lazy mounts are unavailable: every layer falls back to a normal snapshot (download + unpack)')
      snapshotter = await Snapshotter.open({
        root: cfg.root,
        fs: fsHandle.fs,
        log: root.child({ component: 'snapshot' }),
        metrics: hooks,
        mountTimeoutMs: cfg.mount_timeout_sec * 1000,
        restore: { waitMs: cfg.mount_timeout_sec * 1000 },
      })
      // Restore runs in the background: with the registry down or slow, re-mounting every layer
      // could outlast systemd's start timeout (issue #11). Calls on a layer still being restored
      // wait for it (bounded); failed layers are retried with backoff.
      const restoreStarted = performance.now()
      const servedP = new Promise<void>((resolve) => { served = resolve })
      // The restore's work waits until we serve: start-up does not compete with it.
      const plan = await snapshotter.startRestore(startupStop.signal, { after: servedP })
      log.info({ pending: plan.pending }, 'restore started')
      void plan.firstPass.then((report) => {
        log.info({ restored: report.restored.length, failed: report.failed.length, staleMounts: report.staleMounts, ms: Math.round(performance.now() - restoreStarted), uptimeMs: Math.round(process.uptime() * 1000) }, 'restored remote snapshots')
      }, (e: unknown) => log.error({ err: errorMessage(e) }, 'restore failed'))
      if (startupStop.signal.aborted) return -1 // the stop path releases and exits
      server = await startSnapshotServer({ address: cfg.address, snapshotter, log: root.child({ component: 'grpc' }) })
      if (keychain) {
        criProxy = await startImageServiceProxy({
          address: cfg.cri_keychain.proxy_path,
          backend: cfg.cri_keychain.image_service_path,
          keychain,
          log: root.child({ component: 'cri' }),
        })
      }
      if (startupStop.signal.aborted) return -1
      const how = await notifyReady().catch((e: unknown) => {
        log.warn({ err: errorMessage(e) }, 'systemd readiness notification failed')
        return 'failed'
      })
      // uptimeMs: process start → ready, module loading included (bench:restart reports it).
      log.info({ address: cfg.address, root: cfg.root, systemd: how, uptimeMs: Math.round(process.uptime() * 1000) }, 'ready')
      served?.()
      return -1 // keep running until a signal
    } catch (e) {
      log.fatal({ err: errorMessage(e) }, 'start-up failed')
      await release()
      return 1
    }
  })()
  let stopping: Promise<void> | undefined
  const stop = (signal: string): void => {
    if (stopping) return
    log.info({ signal }, 'shutting down')
    notifyStopping()
    startupStop.abort()
    stopping = (async () => {
      await startup.catch(() => undefined)
      await release()
      log.info('stopped')
    })()
    void stopping.then(() => process.exit(0))
  }

  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))

  const code = await startup
  // A signal came during a failed start-up: let the stop path finish and exit.
  if (code >= 0 && stopping) return -1
  return code
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code)
  },
  (e: unknown) => {
    process.stderr.write(`stargzd: ${errorMessage(e)}\n`)
    process.exit(1)
  },
)
