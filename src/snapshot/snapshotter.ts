/**
 * containerd snapshotter semantics (containerd's overlay snapshotter + snapshots/storage) over the
 * SQLite metadata store, with remote snapshots through a FileSystem (the reference's
 * snapshot/snapshot.go flow):
 *
 *   Prepare(key, parent, labels{snapshot.ref: chainID, stargz or CRI layer labels})
 *     → create active snapshot → FileSystem.mount(<id>/fs) under a deadline
 *     → ok:   commit it as chainID with label containerd.io/snapshot/remote, answer AlreadyExists
 *             (containerd then lists/stats chainID and skips download + unpack)
 *     → fail: log remote-snapshot-fallback, answer the active snapshot's mounts (normal unpack)
 *
 * Never does synchronous filesystem calls on snapshot dirs that may be FUSE mounts served by this
 * very process: that would deadlock the event loop that answers the FUSE requests.
 */
import { mkdir, readdir, rm, stat, lchown } from 'node:fs/promises'
import { existsSync, renameSync } from 'node:fs'
import { basename, join } from 'node:path'
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, TimeoutError, UnavailableError, errorMessage, isStargzError } from '../errors.js'
import type { Logger } from '../log/logger.js'
import { NO_METRICS, type MetricsHooks } from '../metrics/hooks.js'
import { LIBRARY_DEFAULTS } from '../config/defaults.js'
import { MetaStore } from '../store/metastore.js'
import {
  allIds, commitSnapshot, deleteSnapshot, findByKey, insertSnapshot, listRecords, parentChain, resolve, writeLabels,
  type SnapshotRecord,
} from '../store/snapshot-records.js'
import { diskUsage } from './disk-usage.js'
import type { FileSystem, RemoteLayerInfo } from './filesystem.js'
import { parseFilters, type Adaptor } from './filter.js'
import { REMOTE_LABEL, REMOTE_LABEL_VALUE, TARGET_SNAPSHOT_LABEL, isRemote, remoteLayerFromLabels, validateLabels } from './labels.js'
import { crashPoint } from './crash-points.js'
import { detachAllUnder } from './mountinfo.js'
import { snapshotMounts } from './mounts.js'
import { detectOverlayOptions, type OverlayOptions } from './overlay-options.js'
import { SnapshotPaths } from './paths.js'
import { mountWithDeadline } from './remote-mount.js'
import type { Info, Mount, RequestContext, Usage } from './types.js'

export interface SnapshotterOptions {
  root: string
  fs: FileSystem
  log: Logger
  metrics?: MetricsHooks
  /** Deadline for FileSystem.mount during Prepare and restore. */
  mountTimeoutMs: number
  overlay?: OverlayOptions
  /** Restore's concurrency, retry backoff and how long Mounts/Prepare wait (default LIBRARY_DEFAULTS.restore). */
  restore?: Partial<RestoreSettings>
}

export interface RestoreSettings {
  /** Mounts made at a time, first pass and retries alike. */
  concurrency: number
  /** First retry of a failed layer after this long, doubling up to retryMaxMs. */
  retryBaseMs: number
  retryMaxMs: number
  /** How long Mounts/Prepare/View wait for a layer still being restored before answering Unavailable. */
  waitMs: number
}

export interface RestoreReport {
  restored: string[]
  failed: { name: string; error: string }[]
  staleMounts: number
}

/** What startRestore() set going: layers to restore, and the report of the first attempt at each. */
export interface RestoreStarted {
  pending: number
  firstPass: Promise<RestoreReport>
}

/** One remote snapshot being restored (until it is mounted, removed, or the snapshotter closes). */
interface Restoring {
  rec: SnapshotRecord
  /** Failed attempts so far. */
  failures: number
  lastError: string | undefined
  /** Resolves once mounted or no longer restored (removed, closed); never rejects. */
  done: Promise<void>
  settle: () => void
  retryTimer: NodeJS.Timeout | undefined
  /** The attempt in progress, if any (settles, never rejects). */
  attempt: Promise<void> | undefined
}

function toInfo(r: SnapshotRecord): Info {
  return { name: r.key, parent: r.parent, kind: r.kind, labels: r.labels, createdUs: r.createdUs, updatedUs: r.updatedUs }
}

/** containerd's snapshots adaptor: fields kind, name, parent, labels.<key>. */
export function infoAdaptor(info: Info): Adaptor {
  return (path) => {
    switch (path[0]) {
      case 'kind': return info.kind
      case 'name': return info.name
      case 'parent': return info.parent
      case 'labels': {
        if (path.length < 2) return undefined
        return info.labels[path.slice(1).join('.')]
      }
      default: return undefined
    }
  }
}

function layerOf(rec: SnapshotRecord): RemoteLayerInfo {
  const r = remoteLayerFromLabels(rec.labels)
  return 'layer' in r ? r.layer : { imageRef: '', layerDigest: '', labels: { ...rec.labels } }
}

/** A short fixed category for metrics, from a mount error. */
function fallbackReason(e: unknown): string {
  if (isStargzError(e)) return e.code.replace(/^ERR_/, '').toLowerCase()
  return 'error'
}

export class Snapshotter {
  readonly paths: SnapshotPaths
  private readonly store: MetaStore
  private readonly fs: FileSystem
  private readonly log: Logger
  private readonly metrics: MetricsHooks
  private readonly overlay: OverlayOptions
  private readonly mountTimeoutMs: number
  /** Temp dirs of snapshots being created: Cleanup must leave them alone. */
  private readonly creating = new Set<string>()
  private closing: Promise<void> | undefined
  private readonly restoreCfg: RestoreSettings
  /** Remote snapshots not mounted yet since start-up, by snapshot id. */
  private readonly restoring = new Map<number, Restoring>()
  /** Aborted by close() or restore's signal: no new restore attempt starts. */
  private readonly restoreStop = new AbortController()
  private restoreActive = 0
  /** Restore's background preparation (live mounts asked for, dead ones detached); close() waits for it. */
  private restorePrep: Promise<void> = Promise.resolve()
  private readonly restoreWaiters: (() => void)[] = []

  private constructor(opts: SnapshotterOptions, paths: SnapshotPaths, store: MetaStore) {
    this.paths = paths
    this.store = store
    this.fs = opts.fs
    this.log = opts.log
    this.metrics = opts.metrics ?? NO_METRICS
    this.overlay = opts.overlay ?? detectOverlayOptions()
    this.mountTimeoutMs = opts.mountTimeoutMs
    this.restoreCfg = { ...LIBRARY_DEFAULTS.restore, ...opts.restore }
  }

  static async open(opts: SnapshotterOptions): Promise<Snapshotter> {
    const paths = new SnapshotPaths(opts.root)
    await mkdir(paths.root, { recursive: true, mode: 0o700 })
    await mkdir(paths.snapshots, { recursive: true, mode: 0o700 })
    const store = MetaStore.open(paths.metadata)
    return new Snapshotter(opts, paths, store)
  }

  // ---- reads -------------------------------------------------------------------------------

  stat(ctx: RequestContext, key: string): Info {
    return toInfo(this.store.read((db) => resolve(db, ctx.namespace, key)))
  }

  list(ctx: RequestContext, filters: readonly string[]): Info[] {
    const filter = parseFilters(filters)
    return this.store.read((db) => listRecords(db, ctx.namespace)).map(toInfo).filter((i) => filter.match(infoAdaptor(i)))
  }

  async usage(ctx: RequestContext, key: string): Promise<Usage> {
    const rec = this.store.read((db) => resolve(db, ctx.namespace, key))
    if (rec.kind === 'active' && !isRemote(rec.labels)) return diskUsage(this.paths.fs(rec.id))
    return { size: rec.size, inodes: rec.inodes }
  }

  async mounts(ctx: RequestContext, key: string): Promise<Mount[]> {
    const { rec, parents } = this.store.read((db) => {
      const rec = resolve(db, ctx.namespace, key)
      if (rec.kind === 'committed') throw new FailedPreconditionError(`requested snapshot ${JSON.stringify(key)} not active or view`)
      return { rec, parents: parentChain(db, rec) }
    })
    await this.checkAvailability(parents)
    return snapshotMounts(this.paths, this.overlay, rec.kind, rec.id, parents.map((p) => p.id))
  }

  // ---- writes ------------------------------------------------------------------------------

  update(ctx: RequestContext, info: { name: string; labels: Record<string, string> }, fieldpaths: readonly string[]): Info {
    validateLabels(info.labels)
    return toInfo(this.store.withTransaction((db) => {
      const rec = resolve(db, ctx.namespace, info.name)
      let labels: Record<string, string>
      if (fieldpaths.length === 0) {
        labels = { ...info.labels }
      } else {
        labels = { ...rec.labels }
        for (const path of fieldpaths) {
          if (path === 'labels') {
            labels = { ...info.labels }
          } else if (path.startsWith('labels.')) {
            const k = path.slice('labels.'.length)
            const v = info.labels[k]
            if (v === undefined) delete labels[k]
            else labels[k] = v
          } else {
            throw new InvalidArgumentError(`cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(info.name)}`)
          }
        }
      }
      validateLabels(labels)
      return writeLabels(db, rec.id, labels)
    }))
  }

  async view(ctx: RequestContext, key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    const { rec, parents } = await this.createSnapshot(ctx, 'view', key, parent, labels)
    await this.checkAvailability(parents)
    return snapshotMounts(this.paths, this.overlay, 'view', rec.id, parents.map((p) => p.id))
  }

  async prepare(ctx: RequestContext, key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    const { rec, parents } = await this.createSnapshot(ctx, 'active', key, parent, labels)
    const target = labels[TARGET_SNAPSHOT_LABEL]
    if (target !== undefined && target !== '') {
      const log = this.log.child({ key, parent, target })
      const candidate = remoteLayerFromLabels(labels)
      if ('reason' in candidate) {
        log.debug({ reason: candidate.reason }, 'not a remote snapshot candidate')
      } else if (await this.tryRemote(rec, target, candidate.layer, labels, log)) {
        throw new AlreadyExistsError(`target snapshot ${JSON.stringify(target)}`)
      }
    }
    await this.checkAvailability(parents)
    return snapshotMounts(this.paths, this.overlay, 'active', rec.id, parents.map((p) => p.id))
  }

  async commit(ctx: RequestContext, name: string, key: string, labels: Record<string, string>): Promise<void> {
    validateLabels(labels)
    const rec = this.store.read((db) => resolve(db, ctx.namespace, key))
    const usage = rec.kind === 'active' && !isRemote(rec.labels) ? await diskUsage(this.paths.fs(rec.id)) : { size: 0, inodes: 0 }
    crashPoint('commit:measured')
    this.store.withTransaction((db) => commitSnapshot(db, rec.namespace, key, name, usage, labels))
    crashPoint('commit:committed')
  }

  async remove(ctx: RequestContext, key: string): Promise<void> {
    const removed = this.store.withTransaction((db) => {
      // Without a namespace (containerd's garbage collector) every snapshot of that name goes:
      // the collector only removes names that no namespace references.
      const recs = ctx.namespace === undefined ? findByKey(db, undefined, key) : [resolve(db, ctx.namespace, key)]
      if (recs.length === 0) resolve(db, undefined, key) // throws NotFound
      for (const r of recs) deleteSnapshot(db, r)
      return recs
    })
    // Only after the transaction committed: a crash before this point leaves an orphan dir for
    // Cleanup, never a record without its dir.
    crashPoint('remove:deleted')
    for (const r of removed) {
      await this.forgetRestore(r.id)
      await this.removeDir(r.id, isRemote(r.labels))
    }
  }

  /** Remove directories that no snapshot owns (crash leftovers, removed snapshots). */
  async cleanup(): Promise<string[]> {
    const names = await readdir(this.paths.snapshots)
    // Read ids after readdir: a snapshot whose dir we saw was renamed inside a transaction that
    // has already committed, so its id is in this set.
    const ids = this.store.read((db) => allIds(db))
    const removed: string[] = []
    for (const name of names) {
      const dir = join(this.paths.snapshots, name)
      if (this.creating.has(dir)) continue
      if (/^\d+$/.test(name) && ids.has(Number(name))) continue
      if (await this.removeDirPath(dir)) removed.push(dir)
    }
    return removed
  }

  /**
   * At start-up: detach mounts a previous process left under snapshots/ (a dead FUSE server's
   * mounts answer ENOTCONN), mount every remote snapshot again, sweep orphans. Resolves with the
   * report of the first attempt at each layer; startRestore() is the same without waiting.
   */
  async restore(signal?: AbortSignal): Promise<RestoreReport> {
    return (await this.startRestore(signal)).firstPass
  }

  /**
   * Restore in the background, so the daemon can serve (and tell systemd it is ready) at once:
   * this resolves once the layers to restore are known; after `opts.after`, stale mounts are
   * detached and unowned live ones unmounted, and the layers are then mounted `concurrency` at a time, a failed one retried with doubling backoff
   * until it mounts, its snapshot is removed, or the snapshotter closes. Mounts/Prepare/View on a
   * chain with a layer still being restored wait for it, up to `waitMs` (then Unavailable).
   * After the first pass, orphan directories are swept. `signal` (shutdown) stops starting new
   * attempts; those in progress finish under their deadline (close() waits for them).
   */
  async startRestore(signal?: AbortSignal, opts: { after?: Promise<unknown> } = {}): Promise<RestoreStarted> {
    // Before readiness only what Mounts/Prepare need in order to wait: the list of layers to
    // restore (one SQLite read). Everything that scales with the number of layers — asking
    // stargz-fused which mounts are live, detaching dead ones (an umount per layer) — runs in the
    // background, after `opts.after` (the daemon: socket open and systemd notified).
    const remotes = this.store.read((db) => listRecords(db, undefined)).filter((r) => isRemote(r.labels))
    signal?.addEventListener('abort', () => this.stopRestores(), { once: true })
    if (signal?.aborted) this.stopRestores()
    const entries = remotes.map((rec) => {
      let settle!: () => void
      const done = new Promise<void>((resolve) => { settle = resolve })
      const e: Restoring = { rec, failures: 0, lastError: undefined, done, settle, retryTimer: undefined, attempt: undefined }
      this.restoring.set(rec.id, e)
      return e
    })
    const report: RestoreReport = { restored: [], failed: [], staleMounts: 0 }
    this.restorePrep = (async () => {
      await opts.after?.catch(() => undefined)
      // Layers still served by a FUSE process that outlived us (stargz-fused) stay; mount()
      // re-attaches to them without the registry. The rest under snapshots/ is dead: detach.
      const live = new Set(await this.fs.liveMounts?.() ?? [])
      const left = await detachAllUnder(this.paths.snapshots, live, this.restoreCfg.concurrency * 2)
      report.staleMounts = left.length
      if (left.length > 0) this.log.warn({ mounts: left }, 'stale mounts could not be detached')
      // A live layer no snapshot record owns (we died between mount and commit of a Prepare): undo.
      const wanted = new Set(remotes.map((r) => this.paths.fs(r.id)))
      for (const mp of live) {
        if (!wanted.has(mp)) await this.fs.unmount(mp).catch((e: unknown) => this.log.warn({ mountpoint: mp, err: errorMessage(e) }, 'unmount of unowned live layer failed'))
      }
    })()
    const prep = this.restorePrep
    const firstPass = (async () => {
      await prep
      await Promise.all(entries.map((e) => this.limited(() => this.attemptRestore(e, report))))
      if (this.restoreStop.signal.aborted) {
        this.log.info({ restored: report.restored.length, skipped: remotes.length - report.restored.length - report.failed.length }, 'restore stopped by shutdown')
        return report
      }
      const orphans = await this.cleanup()
      if (orphans.length > 0) this.log.info({ dirs: orphans }, 'removed orphan snapshot directories')
      return report
    })()
    return { pending: entries.length, firstPass }
  }

  /** Run `fn` when fewer than `concurrency` restore mounts are in progress. */
  private async limited(fn: () => Promise<void>): Promise<void> {
    while (this.restoreActive >= this.restoreCfg.concurrency) await new Promise<void>((resolve) => this.restoreWaiters.push(resolve))
    this.restoreActive++
    try {
      await fn()
    } finally {
      this.restoreActive--
      this.restoreWaiters.shift()?.()
    }
  }

  /** One attempt at mounting a restoring layer; a failure schedules the next one. */
  private async attemptRestore(e: Restoring, report?: RestoreReport): Promise<void> {
    if (this.restoreStop.signal.aborted || this.restoring.get(e.rec.id) !== e) return
    const rec = e.rec
    const mp = this.paths.fs(rec.id)
    const run = (async () => {
      await mkdir(mp, { recursive: true })
      await mountWithDeadline(this.fs, mp, layerOf(rec), this.mountTimeoutMs)
    })()
    e.attempt = run.then(() => undefined, () => undefined)
    try {
      await run
      if (this.restoring.get(rec.id) === e) this.restoring.delete(rec.id)
      e.settle()
      report?.restored.push(rec.key)
      this.log.info({ key: rec.key, namespace: rec.namespace, mountpoint: mp, attempt: e.failures + 1 }, 'remote-snapshot-restored')
    } catch (err) {
      e.failures++
      e.lastError = errorMessage(err)
      report?.failed.push({ name: rec.key, error: e.lastError })
      const retryMs = Math.min(this.restoreCfg.retryMaxMs, this.restoreCfg.retryBaseMs * 2 ** Math.min(e.failures - 1, 30))
      const stopped = this.restoreStop.signal.aborted || this.restoring.get(rec.id) !== e
      this.log.warn({ key: rec.key, namespace: rec.namespace, mountpoint: mp, err: e.lastError, attempt: e.failures, ...(stopped ? {} : { retryMs }) }, 'remote-snapshot-restore-failed')
      if (!stopped) {
        e.retryTimer = setTimeout(() => { e.retryTimer = undefined; void this.limited(() => this.attemptRestore(e)) }, retryMs)
        // Retries must not keep a process alive that has nothing else to do (tests, `stargz` tools).
        e.retryTimer.unref()
      }
    } finally {
      e.attempt = undefined
    }
  }

  /** No restore attempt starts from now on; the waiters are let go. */
  private stopRestores(): void {
    this.restoreStop.abort(new UnavailableError('snapshotter is shutting down'))
    for (const e of this.restoring.values()) {
      clearTimeout(e.retryTimer)
      e.retryTimer = undefined
    }
    for (const w of this.restoreWaiters.splice(0)) w()
  }

  /** Stop restoring snapshot `id` (it is being removed); waits for its attempt in progress. */
  private async forgetRestore(id: number): Promise<void> {
    const e = this.restoring.get(id)
    if (!e) return
    this.restoring.delete(id)
    clearTimeout(e.retryTimer)
    await e.attempt
    e.settle()
  }

  /** Wait, up to waitMs, for a layer of `chain` that is still being restored. */
  private async waitRestored(rec: SnapshotRecord): Promise<void> {
    const e = this.restoring.get(rec.id)
    if (!e) return
    const ms = this.restoreCfg.waitMs
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<'expired'>((resolve) => { timer = setTimeout(() => resolve('expired'), ms) })
    const stopped = new Promise<'stopped'>((resolve) => {
      if (this.restoreStop.signal.aborted) resolve('stopped')
      else this.restoreStop.signal.addEventListener('abort', () => resolve('stopped'), { once: true })
    })
    const out = await Promise.race([e.done.then(() => 'done' as const), expired, stopped]).finally(() => clearTimeout(timer))
    if (out === 'done') return
    const why = out === 'stopped' ? 'the snapshotter is shutting down' : `still being restored after waiting ${ms} ms`
    throw new UnavailableError(`layer ${JSON.stringify(rec.key)} (${layerOf(rec).layerDigest}) is ${why}; ${e.failures} failed attempt(s)${e.lastError === undefined ? '' : `, last: ${e.lastError}`}`)
  }

  /** Unmount remote layers and close the store. Snapshot dirs stay. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Restore first: no attempt starts from here on, and the ones in progress settle (each under
      // its mount deadline) before the unmounts below, so every mount restore made is undone.
      this.stopRestores()
      await this.restorePrep.catch(() => undefined)
      await Promise.all([...this.restoring.values()].map((e) => e.attempt))
      let remotes: SnapshotRecord[] = []
      try {
        remotes = this.store.read((db) => listRecords(db, undefined)).filter((r) => isRemote(r.labels))
      } catch {
        remotes = []
      }
      for (const r of remotes) {
        await this.fs.unmount(this.paths.fs(r.id)).catch((e: unknown) => this.log.debug({ key: r.key, err: errorMessage(e) }, 'unmount at close failed'))
      }
      this.store.close()
    })()
    return this.closing
  }

  // ---- internals ---------------------------------------------------------------------------

  private async createSnapshot(ctx: RequestContext, kind: 'active' | 'view', key: string, parent: string, labels: Record<string, string>): Promise<{ rec: SnapshotRecord; parents: SnapshotRecord[] }> {
    if (key === '') throw new InvalidArgumentError('snapshot key must not be empty')
    validateLabels(labels)
    const ns = ctx.namespace ?? ''
    // Owner of the new upper dir follows the parent's root (as containerd's overlay does). Stat
    // asynchronously, before the transaction: the parent may be a FUSE mount served by us.
    let owner: { uid: number; gid: number } | undefined
    if (parent !== '') {
      const p = this.store.read((db) => findByKey(db, ns, parent)[0])
      if (p) {
        const st = await stat(this.paths.fs(p.id))
        owner = { uid: st.uid, gid: st.gid }
      }
    }
    const td = await this.makeTempDir(kind, owner)
    crashPoint('prepare:temp-dir')
    let renamedTo: string | undefined
    try {
      const out = this.store.withTransaction((db) => {
        const rec = insertSnapshot(db, { ns, key, kind, parent, labels })
        const parents = parentChain(db, rec)
        renamedTo = this.paths.dir(rec.id)
        // The id is new, so a dir already there is an orphan: a crash after the rename of a
        // transaction that never committed (SQLite hands the id out again), not yet swept by
        // cleanup (which runs after restore, in the background). Move it aside for cleanup.
        if (existsSync(renamedTo)) renameSync(renamedTo, join(this.paths.snapshots, `orphan-${rec.id}-${Math.random().toString(36).slice(2, 10)}`))
        renameSync(td, renamedTo)
        crashPoint('prepare:renamed')
        return { rec, parents }
      })
      this.creating.delete(td)
      crashPoint('prepare:recorded')
      return out
    } catch (e) {
      // The transaction rolled back; undo the directory steps.
      await rm(renamedTo ?? td, { recursive: true, force: true }).catch(() => undefined)
      this.creating.delete(td)
      throw e
    }
  }

  private async makeTempDir(kind: 'active' | 'view', owner: { uid: number; gid: number } | undefined): Promise<string> {
    const td = join(this.paths.snapshots, `new-${process.pid}-${Math.random().toString(36).slice(2, 10)}`)
    this.creating.add(td)
    try {
      await mkdir(td, { mode: 0o700 })
      await mkdir(join(td, 'fs'), { mode: 0o755 })
      if (kind === 'active') await mkdir(join(td, 'work'), { mode: 0o711 })
      if (owner) await lchown(join(td, 'fs'), owner.uid, owner.gid)
      return td
    } catch (e) {
      await rm(td, { recursive: true, force: true }).catch(() => undefined)
      this.creating.delete(td)
      throw e
    }
  }

  /** True when `rec` became a committed remote snapshot (answer AlreadyExists). */
  private async tryRemote(rec: SnapshotRecord, target: string, layer: RemoteLayerInfo, labels: Record<string, string>, log: Logger): Promise<boolean> {
    const mp = this.paths.fs(rec.id)
    try {
      await mountWithDeadline(this.fs, mp, layer, this.mountTimeoutMs)
      crashPoint('prepare:mounted')
    } catch (e) {
      this.metrics.fallback(fallbackReason(e))
      if (e instanceof TimeoutError && e.mayHoldMount) {
        // A mount may be on this dir, now or later: never hand it to containerd for unpacking.
        await this.dropActive(rec)
        log.warn({ layer: layer.layerDigest, reason: errorMessage(e) }, 'remote-snapshot-fallback')
        throw new UnavailableError(`remote mount of ${layer.layerDigest} at ${mp} passed its deadline and may still be mounted; retry the pull`, { cause: e })
      }
      log.info({ layer: layer.layerDigest, reason: errorMessage(e) }, 'remote-snapshot-fallback')
      return false
    }
    try {
      this.store.withTransaction((db) => commitSnapshot(db, rec.namespace, rec.key, target, { size: 0, inodes: 0 }, { ...labels, [REMOTE_LABEL]: REMOTE_LABEL_VALUE }))
    } catch (e) {
      await this.fs.unmount(mp).catch((ue: unknown) => log.warn({ err: errorMessage(ue) }, 'unmount after failed remote commit'))
      if (e instanceof AlreadyExistsError) {
        // Another Prepare committed the same chain first: theirs serves; drop ours.
        await this.dropActive(rec)
        log.info({ layer: layer.layerDigest, existing: true }, 'remote-snapshot-prepared')
        return true
      }
      this.metrics.fallback('commit')
      log.info({ layer: layer.layerDigest, reason: errorMessage(e) }, 'remote-snapshot-fallback')
      return false
    }
    crashPoint('prepare:remote-committed')
    log.info({ layer: layer.layerDigest, mountpoint: mp }, 'remote-snapshot-prepared')
    return true
  }

  private async dropActive(rec: SnapshotRecord): Promise<void> {
    this.store.withTransaction((db) => {
      const cur = findByKey(db, rec.namespace, rec.key)[0]
      if (cur && cur.id === rec.id) deleteSnapshot(db, cur)
    })
    await this.removeDir(rec.id, false)
  }

  private async removeDir(id: number, remote: boolean): Promise<void> {
    const dir = this.paths.dir(id)
    if (remote) {
      await this.fs.unmount(this.paths.fs(id)).catch((e: unknown) => this.log.debug({ dir, err: errorMessage(e) }, 'unmount of removed snapshot failed'))
      crashPoint('remove:unmounted')
    }
    await this.removeDirPath(dir)
  }

  /** rm -rf `dir`, but never through a mount that is still there. */
  private async removeDirPath(dir: string): Promise<boolean> {
    const left = await detachAllUnder(dir)
    if (left.length > 0) {
      this.log.warn({ dir, mounts: left }, 'snapshot directory still has mounts; left for a later cleanup')
      return false
    }
    try {
      await rm(dir, { recursive: true, force: true })
      return true
    } catch (e) {
      this.log.warn({ dir: basename(dir), err: errorMessage(e) }, 'failed to remove snapshot directory')
      return false
    }
  }

  private async checkAvailability(chain: readonly SnapshotRecord[]): Promise<void> {
    const remote = chain.filter((r) => isRemote(r.labels))
    if (remote.length === 0) return
    // A layer restore has not mounted yet: wait for it (bounded) rather than answer Unavailable.
    const waits = await Promise.allSettled(remote.map((r) => this.waitRestored(r)))
    for (const w of waits) {
      if (w.status === 'rejected') {
        this.log.warn({ err: errorMessage(w.reason) }, 'layer is unavailable')
        throw w.reason
      }
    }
    const results = await Promise.allSettled(remote.map((r) => this.fs.check(this.paths.fs(r.id), layerOf(r))))
    results.forEach((res, i) => {
      if (res.status === 'rejected') {
        const r = remote[i] as SnapshotRecord
        this.log.warn({ key: r.key, mountpoint: this.paths.fs(r.id), err: errorMessage(res.reason) }, 'layer is unavailable')
        throw new UnavailableError(`layer ${JSON.stringify(r.key)} unavailable: ${errorMessage(res.reason)}`, { cause: res.reason })
      }
    })
  }
}
