/**
 * The protocol backend for LayerMount (src/fuse/layer-fs.ts): serves a layer through our own FUSE
 * code (./layer-server.ts over ./connection.ts) instead of fuse-native, and — when given an fd
 * holder — makes every mount survive the death of this process:
 *
 * - a fresh mount's /dev/fuse fd is copied into the holder with its description (mountpoint,
 *   layer, how to reach the registry: `describe()` gives it before the mount);
 * - a mount at a mountpoint the holder already has a connection for (of the same layer) is an
 *   *adoption*: the fd is copied back and served, and FUSE_NOTIFY_RESEND re-queues what the dead
 *   server had read and not answered. The kernel's node ids and file handles from before are
 *   inode numbers of the same TOC's tree, so they mean the same thing to us;
 * - an unmount drops the holder's copy.
 */
import type { Logger } from 'pino'
import { errorMessage } from '../errors.js'
import type { MountBackend, MountBackendRequest, MountBackendResult } from '../fuse/layer-fs.js'
import type { HeldConnection, HolderClient } from './holder.js'
import { LayerServer } from './layer-server.js'
import { adoptConnection, protoMount, type ProtoMount } from './mount.js'
import { loadFuseFd } from './native.js'
import type { ConnectionTuning } from './connection.js'

export interface ProtoBackendOptions extends ConnectionTuning {
  log: Logger
  /** Where connection fds are kept across a crash; without one, mounts end with this process. */
  holder?: HolderClient
}

export interface AdoptionStats { adopted: number; fresh: number }

export class ProtoBackend implements MountBackend {
  readonly kind = 'proto'
  readonly stats: AdoptionStats = { adopted: 0, fresh: 0 }
  /** Connections an earlier server left in the holder, by mountpoint, until adopted or dropped. */
  private readonly adoptable = new Map<string, HeldConnection>()
  private readonly meta = new Map<string, Record<string, unknown>>()
  private holderPid = 0

  constructor(private readonly o: ProtoBackendOptions) {}

  /** Learn what the holder keeps (call once at start); returns the held connections. */
  async loadHeld(): Promise<HeldConnection[]> {
    if (!this.o.holder) return []
    const l = await this.o.holder.list()
    this.holderPid = l.pid
    for (const e of l.entries) this.adoptable.set(e.key, e)
    return l.entries
  }

  adopting(mountpoint: string): boolean {
    return this.adoptable.has(mountpoint)
  }

  /** What to store beside a mount's fd in the holder (the layer info a restart re-opens from). */
  describe(mountpoint: string, meta: Record<string, unknown>): void {
    this.meta.set(mountpoint, meta)
  }

  /** Forget a held connection without serving it (unmounted while we were down, or given up). */
  async drop(mountpoint: string): Promise<void> {
    this.adoptable.delete(mountpoint)
    this.meta.delete(mountpoint)
    await this.o.holder?.drop(mountpoint).catch((e: unknown) => this.o.log.warn({ mountpoint, err: errorMessage(e) }, 'fd-holder-drop-failed'))
  }

  async mount(req: MountBackendRequest): Promise<MountBackendResult> {
    const server = new LayerServer(req.layer, req.table, req.log, {
      attrTimeoutSec: req.attrTimeoutSec, entryTimeoutSec: req.entryTimeoutSec, serveXattrs: process.env.STARGZ_SERVE_XATTRS === '1',
      ...(req.opaqueXattrs ? { opaqueXattrs: req.opaqueXattrs } : {}), ...(req.onOp ? { onOp: req.onOp } : {}),
    })
    const opts = { ...this.o, log: req.log, fsName: req.fsName }
    const onUnmounted = (): Promise<void> => this.drop(req.mountpoint)
    const held = this.adoptable.get(req.mountpoint)
    let m: ProtoMount
    if (held !== undefined && held.meta.layerDigest === req.layer.digest) {
      const fd = loadFuseFd().getfd(this.holderPid, held.fd)
      this.adoptable.delete(req.mountpoint)
      m = adoptConnection(fd, req.mountpoint, server, opts, onUnmounted)
      this.stats.adopted++
      req.log.info({ mountpoint: req.mountpoint, heldFd: held.fd }, 'fuse-connection-adopted')
    } else {
      m = await protoMount(req.mountpoint, server, opts, onUnmounted)
      this.stats.fresh++
      if (this.o.holder) {
        const meta = { ...(this.meta.get(req.mountpoint) ?? {}), layerDigest: req.layer.digest }
        try {
          await this.o.holder.hold(req.mountpoint, process.pid, m.connection.fd, meta)
        } catch (e) {
          // Served, just not crash-proof: say so rather than fail a working mount.
          req.log.warn({ mountpoint: req.mountpoint, err: errorMessage(e) }, 'fd-holder-hold-failed: this mount will not survive a crash of stargz-fused')
        }
      }
    }
    return { mount: m, stats: server.stats }
  }
}
