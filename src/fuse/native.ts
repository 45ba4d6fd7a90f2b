/**
 * Typed access to fuse-native 2.2.6 (libfuse2 high-level, path-based API), with three changes
 * made by subclassing instead of patching the package:
 *
 * - Mount options: its `-o` whitelist lacks `ro`, `use_ino`, `negative_timeout`, `suid`, `dev`
 *   and `ac_attr_timeout`, so `_fuseOptions` returns our own option string.
 * - Unmount: its `close` shells out to `fusermount -uz`, a name Debian's fuse3 package does
 *   not ship (only `fusermount3`) and a lazy unmount that hides busy mounts. Ours tries a clean
 *   unmount with whatever tool exists, falls back to lazy, then releases the native handle.
 * - getxattr: it copies a value into the kernel's buffer without checking its size (libfuse
 *   would then reply with more bytes than the buffer holds); ours answers ERANGE.
 */
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { unmountPath, type UnmountResult } from './unmount.js'
import { ENODATA, ERANGE } from './errno.js'

const require = createRequire(import.meta.url)

/** Callback conventions of fuse-native: first argument 0 or a negative errno. */
export type Done = (errno: number) => void
export type DoneWith<T> = (errno: number, value?: T) => void

export interface NativeStat {
  mode: number; uid: number; gid: number; size: number; dev: number; nlink: number; ino: number
  rdev: number; blksize: number; blocks: number; atime: number; mtime: number; ctime: number
}

export interface NativeStatfs {
  bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number
  ffree: number; favail: number; fsid: number; flag: number; namemax: number
}

export interface FuseOps {
  init?(cb: Done): void
  getattr(path: string, cb: DoneWith<NativeStat>): void
  readdir?(path: string, cb: (errno: number, names?: string[], stats?: NativeStat[]) => void): void
  readlink?(path: string, cb: DoneWith<string>): void
  open?(path: string, flags: number, cb: DoneWith<number>): void
  read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErrno: number) => void): void
  release?(path: string, fd: number, cb: Done): void
  getxattr?(path: string, name: string, position: number, cb: DoneWith<Buffer | null>): void
  listxattr?(path: string, cb: DoneWith<string[]>): void
  statfs?(path: string, cb: DoneWith<NativeStatfs>): void
  access?(path: string, mode: number, cb: Done): void
  [writeOp: string]: unknown
}

interface FuseBase {
  readonly mnt: string
  _thread: Buffer | null
  mount(cb: (err: Error | null) => void): void
  unmount(cb: (err: Error | null) => void): void
}

interface FuseConstructor {
  new (mnt: string, ops: FuseOps, opts: Record<string, unknown>): FuseBase
}

interface Binding {
  fuse_native_unmount(mnt: string, thread: Buffer): void
}

let loaded: { Fuse: FuseConstructor; binding: Binding } | undefined

/** Loads the native module (throws with the loader's reason if its prebuild does not load). */
export function loadFuseNative(): { Fuse: FuseConstructor; binding: Binding } {
  if (loaded) return loaded
  const Fuse = require('fuse-native') as FuseConstructor
  // The same .node file fuse-native itself loaded (node-gyp-build resolves the same prebuild,
  // and Node caches native modules by path), for releasing its handle after our own unmount.
  const gypBuild = require(require.resolve('node-gyp-build', { paths: [dirname(require.resolve('fuse-native'))] })) as (dir: string) => Binding
  const binding = gypBuild(dirname(require.resolve('fuse-native/package.json')))
  loaded = { Fuse, binding }
  return loaded
}

export interface NativeMountOptions {
  /** Comma-separated libfuse2 / kernel mount options, without `-o`. */
  options: string[]
  /** Per-op timeouts in ms as fuse-native takes them (`false` = none). */
  timeout: Record<string, number | false>
}

export interface NativeMount {
  readonly mountpoint: string
  /** Unmounts (clean, else lazy) and releases the native handle. */
  unmount(): Promise<UnmountResult>
}

/** Mounts `ops` at `mountpoint`; resolves once the kernel has sent INIT. */
export async function nativeMount(mountpoint: string, ops: FuseOps, opts: NativeMountOptions): Promise<NativeMount> {
  const { Fuse, binding } = loadFuseNative()
  const optionString = opts.options.length > 0 ? '-o' + opts.options.join(',') : ''
  if (optionString.length >= 1024) throw new Error(`FUSE option string too long (${optionString.length} bytes)`)

  class StargzFuse extends Fuse {
    _fuseOptions(): string { return optionString }

    _op_getxattr(signal: (ret: number, buf: ArrayBuffer) => void, path: string, name: string, valueBuf: Buffer, position: number): void {
      const getxattr = ops.getxattr
      if (!getxattr) { signal(ENODATA, valueBuf.buffer as ArrayBuffer); return }
      getxattr(path, name, position, (err, value) => {
        if (err !== 0) return signal(err, valueBuf.buffer as ArrayBuffer)
        if (!value) return signal(ENODATA, valueBuf.buffer as ArrayBuffer)
        if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer as ArrayBuffer)
        if (value.length > valueBuf.length) return signal(ERANGE, valueBuf.buffer as ArrayBuffer)
        value.copy(valueBuf)
        return signal(value.length, valueBuf.buffer as ArrayBuffer)
      })
    }

    private released = false
    release(): void {
      if (this.released || !this._thread) return
      this.released = true
      binding.fuse_native_unmount(this.mnt, this._thread)
    }
  }

  const fuse = new StargzFuse(mountpoint, ops, { timeout: opts.timeout })
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())))
  let closing: Promise<UnmountResult> | undefined
  return {
    mountpoint: fuse.mnt,
    unmount(): Promise<UnmountResult> {
      // fuse-native's own close (fusermount -uz) is bypassed; see the file comment.
      closing ??= unmountPath(fuse.mnt).then((r) => { fuse.release(); return r })
      // A failed attempt (e.g. no unmount tool) may be retried.
      closing.catch(() => { closing = undefined })
      return closing
    },
  }
}
