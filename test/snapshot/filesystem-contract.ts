/**
 * The FileSystem contract (src/snapshot/filesystem.ts), as one suite every implementation runs
 * (containerd's snapshotter test suite idea): the fake the snapshotter tests use and the real
 * lazy FUSE filesystem must behave the same at this seam.
 */
import type { Test } from 'tap'
import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { FileSystem, RemoteLayerInfo } from '../../src/snapshot/filesystem.js'

export interface ContractSubject {
  fs: FileSystem
  /** A layer that mounts. */
  good: RemoteLayerInfo
  /** A layer that cannot be mounted (not eStargz). */
  bad: RemoteLayerInfo
  /** Is there a mount (or the fake's marker) at `dir`? */
  mountedAt(dir: string): Promise<boolean>
  /** A fresh empty directory. */
  dir(name: string): Promise<string>
}

async function settles(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => undefined, (e: unknown) => e)
}

export function fileSystemContract(t: Test, name: string, make: (t: Test) => Promise<ContractSubject>): void {
  t.test(`${name}: mount, check, unmount; the directory is empty again`, async (t) => {
    const s = await make(t)
    const mp = await s.dir('ok')
    await s.fs.mount(mp, s.good)
    t.ok(await s.mountedAt(mp), 'mounted')
    await s.fs.check(mp, s.good)
    await s.fs.unmount(mp)
    t.notOk(await s.mountedAt(mp), 'unmounted')
    t.same(await readdir(mp), [], 'nothing left in the mountpoint')
    t.match(await settles(s.fs.check(mp, s.good)), { code: 'ERR_UNAVAILABLE' }, 'check after unmount says Unavailable')
  })

  t.test(`${name}: a failed mount rejects typed and leaves the directory empty and unmounted`, async (t) => {
    const s = await make(t)
    const mp = await s.dir('bad')
    const err = await settles(s.fs.mount(mp, s.bad))
    t.match(err, { code: /^ERR_/ }, 'a StargzError')
    t.notOk(await s.mountedAt(mp))
    t.same(await readdir(mp), [])
    t.match(await settles(s.fs.check(mp, s.bad)), { code: 'ERR_UNAVAILABLE' })
  })

  t.test(`${name}: an aborted mount rejects with the abort reason and leaves nothing`, async (t) => {
    const s = await make(t)
    const mp = await s.dir('aborted')
    const ac = new AbortController()
    const why = new Error('cancelled by the test')
    ac.abort(why)
    t.equal(await settles(s.fs.mount(mp, s.good, ac.signal)), why)
    t.notOk(await s.mountedAt(mp))
    t.same(await readdir(mp), [])
  })

  t.test(`${name}: a second mount at the same place is refused; the first stays`, async (t) => {
    const s = await make(t)
    const mp = await s.dir('twice')
    await s.fs.mount(mp, s.good)
    t.match(await settles(s.fs.mount(mp, s.good)), { code: 'ERR_FAILED_PRECONDITION' })
    await s.fs.check(mp, s.good)
    await s.fs.unmount(mp)
    t.notOk(await s.mountedAt(mp))
  })

  t.test(`${name}: unmount of a directory never mounted is a no-op; unmount twice is safe`, async (t) => {
    const s = await make(t)
    const never = await s.dir('never')
    await s.fs.unmount(never)
    const mp = await s.dir('again')
    await s.fs.mount(mp, s.good)
    await s.fs.unmount(mp)
    await s.fs.unmount(mp)
    t.notOk(await s.mountedAt(mp))
  })

  t.test(`${name}: one layer at two mountpoints; each unmounts on its own`, async (t) => {
    const s = await make(t)
    const a = await s.dir('a')
    const b = await s.dir('b')
    await s.fs.mount(a, s.good)
    await s.fs.mount(b, s.good)
    await s.fs.unmount(a)
    t.notOk(await s.mountedAt(a))
    await s.fs.check(b, s.good)
    await s.fs.unmount(b)
    t.notOk(await s.mountedAt(b))
  })
}

/** Fresh directories under `root`. */
export function dirMaker(root: string): (name: string) => Promise<string> {
  return async (name) => {
    const d = join(root, name)
    await mkdir(d, { recursive: true })
    return d
  }
}
