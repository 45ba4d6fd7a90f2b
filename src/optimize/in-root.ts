/**
 * Reading a file of an untrusted rootfs from the host without leaving it: every path component is
 * resolved by hand, a symlink's target is taken relative to the rootfs (an absolute target means
 * the rootfs's "/", ".." stops at it), as the kernel would inside a chroot. Plain
 * `readFile(join(rootfs, "etc/passwd"))` would follow a symlink `etc/passwd -> /etc/shadow` to
 * the HOST's file. Same idea as containerd's `fs.RootPath` / filepath-securejoin.
 */
import { lstat, readFile, readlink } from 'node:fs/promises'
import { join } from 'node:path'

/** Linux's own limit on symlinks followed in one lookup. */
const MAX_LINKS = 40

/**
 * The host path of `path` inside `root`, with every symlink resolved within `root`. The last
 * component may be missing (the returned path then names where it would be).
 */
export async function resolveInRoot(root: string, path: string): Promise<string> {
  const todo = path.split('/').filter((p) => p !== '' && p !== '.')
  const done: string[] = []
  let links = 0
  while (todo.length > 0) {
    const part = todo.shift() as string
    if (part === '..') { done.pop(); continue }
    const host = join(root, ...done, part)
    const st = await lstat(host).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return undefined; throw e })
    if (st?.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw Object.assign(new Error(`too many symlinks resolving ${path} in ${root}`), { code: 'ELOOP' })
      const target = await readlink(host)
      if (target.startsWith('/')) done.length = 0
      todo.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'))
      continue
    }
    done.push(part)
    if (st === undefined && todo.length > 0) throw Object.assign(new Error(`${join('/', ...done)} does not exist in ${root}`), { code: 'ENOENT' })
  }
  return join(root, ...done)
}

/** readFile of `path` inside `root` (see resolveInRoot); undefined when it does not exist. */
export async function readInRoot(root: string, path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(await resolveInRoot(root, path))
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined
    throw e
  }
}
