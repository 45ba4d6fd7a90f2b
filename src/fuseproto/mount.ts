/**
 * Mounting a FUSE connection we own, and adopting one an earlier server owned.
 *
 * Fresh: open /dev/fuse, hand it to mount(8) as its fd 3 (`-o fd=3,rootmode=…`; `-i`: no
 * mount.fuse helper), then start reading: the kernel's first request is INIT. No libfuse and no
 * fusermount, so the fd is ours and can be copied into the fd holder.
 *
 * Adopted: an fd copied back from the holder (pidfd_getfd). The connection was initialised by the
 * process that mounted it; we start reading and send FUSE_NOTIFY_RESEND so requests the dead
 * server had read but not answered are queued again.
 */
import { spawn } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import type { Logger } from 'pino'
import { UnavailableError } from '../errors.js'
import { writeFile } from 'node:fs/promises'
import { findMount, unmountPath, type UnmountResult } from '../fuse/unmount.js'
import { FuseConnection, type ConnectionTuning, type FuseHandler } from './connection.js'

export interface ProtoMountOptions extends ConnectionTuning {
  log: Logger
  /** The mount's source as mount(8) and /proc/self/mountinfo show it. */
  fsName: string
  allowOther?: boolean
  defaultPermissions?: boolean
  /** How long to wait for the kernel's INIT after mount(8) returned (ms, default 30 s). */
  initTimeoutMs?: number
}

export interface ProtoMount {
  readonly mountpoint: string
  readonly connection: FuseConnection
  /** Unmount (clean, else lazy), then wait for the connection to end. Safe to call twice. */
  unmount(): Promise<UnmountResult>
}

/** The kernel options of a read-only layer mount on fd 3 of mount(8). */
export function kernelMountOptions(o: Pick<ProtoMountOptions, 'allowOther' | 'defaultPermissions'>): string[] {
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  const opts = ['ro', 'suid', 'dev', 'fd=3', 'rootmode=40000', `user_id=${uid}`, `group_id=${gid}`]
  if (o.allowOther ?? true) opts.push('allow_other')
  if (o.defaultPermissions ?? true) opts.push('default_permissions')
  return opts
}

function runMount(fd: number, source: string, mountpoint: string, options: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('mount', ['-i', '-t', 'fuse.stargz', '-o', options.join(','), source, mountpoint], { stdio: ['ignore', 'ignore', 'pipe', fd] })
    let stderr = ''
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (d: string) => { if (stderr.length < 4096) stderr += d })
    child.on('error', (e) => reject(new UnavailableError(`mount(8) for ${mountpoint}: ${e.message}`, { cause: e })))
    child.on('close', (code) => {
      if (code === 0) resolve()
      else reject(new UnavailableError(`mount(8) of a FUSE connection at ${mountpoint} failed (exit ${code}): ${stderr.trim()}`))
    })
  })
}

function settled(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p.then(() => true), new Promise<boolean>((r) => { timer = setTimeout(() => r(false), ms) })]).finally(() => clearTimeout(timer))
}

/** Abort a FUSE connection by its device ("0:NN" → /sys/fs/fuse/connections/NN/abort); best effort. */
async function abortConnection(majorMinor: string): Promise<void> {
  const [maj, min] = majorMinor.split(':').map(Number) as [number, number]
  const id = ((maj & 0xfff) << 20) | (min & 0xfffff)
  const dir = '/sys/fs/fuse/connections'
  // fusectl is usually mounted by systemd (sys-fs-fuse-connections.mount); mount it if not.
  if (!existsSync(`${dir}/${id}`)) {
    await new Promise<void>((resolve) => spawn('mount', ['-t', 'fusectl', 'fusectl', dir], { stdio: 'ignore' }).on('close', () => resolve()).on('error', () => resolve()))
  }
  await writeFile(`${dir}/${id}/abort`, '1').catch(() => undefined)
}

function makeMount(mountpoint: string, connection: FuseConnection, onUnmounted: () => Promise<void>): ProtoMount {
  let closing: Promise<UnmountResult> | undefined
  return {
    mountpoint,
    connection,
    unmount(): Promise<UnmountResult> {
      closing ??= (async () => {
        const dev = (await findMount(mountpoint).catch(() => undefined))?.majorMinor
        const how = await unmountPath(mountpoint)
        await onUnmounted()
        // A clean unmount normally ends the connection at once (the reader then closes our fd).
        // But a copy of the mount in another mount namespace (one made while it was mounted:
        // any container started meanwhile under shared propagation) keeps the superblock and
        // thus the connection; we unmounted it, so end it for them too through fusectl.
        if (how === 'clean' && !(await settled(connection.ended, 1000)) && dev !== undefined) {
          await abortConnection(dev)
          await settled(connection.ended, 2000)
        }
        return how
      })()
      closing.catch(() => { closing = undefined })
      return closing
    },
  }
}

export async function protoMount(mountpoint: string, handler: FuseHandler, o: ProtoMountOptions, onUnmounted: () => Promise<void> = async () => undefined): Promise<ProtoMount> {
  const fd = openSync('/dev/fuse', 'r+')
  const source = o.fsName.replace(/[,\s\\]/g, '_')
  try {
    await runMount(fd, source, mountpoint, kernelMountOptions(o))
  } catch (e) {
    closeSync(fd)
    throw e
  }
  // Only now: a read of an fd that is not mounted yet fails with EPERM at once.
  const conn = new FuseConnection(fd, handler, o.log, o)
  conn.start(false)
  const timeoutMs = o.initTimeoutMs ?? 30_000
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      conn.ready,
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new UnavailableError(`no FUSE INIT from the kernel for ${mountpoint} within ${timeoutMs} ms`)), timeoutMs) }),
    ])
  } catch (e) {
    await unmountPath(mountpoint).catch(() => undefined)
    throw e
  } finally {
    clearTimeout(timer)
  }
  return makeMount(mountpoint, conn, onUnmounted)
}

/** Serve a connection initialised by an earlier process (fd copied from the holder). */
export function adoptConnection(fd: number, mountpoint: string, handler: FuseHandler, o: ProtoMountOptions, onUnmounted: () => Promise<void> = async () => undefined): ProtoMount {
  const conn = new FuseConnection(fd, handler, o.log, o)
  conn.start(true)
  conn.notifyResend()
  return makeMount(mountpoint, conn, onUnmounted)
}
