/**
 * Disk usage with `du` semantics, as containerd's continuity fs.DiskUsage: every inode under
 * `root` (root included) counted once even when hard-linked, size = allocated blocks × 512.
 * Asynchronous, so a big upper dir does not stall other requests.
 */
import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Usage } from './types.js'

export async function diskUsage(root: string): Promise<Usage> {
  const seen = new Set<string>()
  let size = 0
  const stack = [root]
  while (stack.length > 0) {
    const path = stack.pop() as string
    const st = await lstat(path)
    const id = `${st.dev}:${st.ino}`
    if (!seen.has(id)) {
      seen.add(id)
      size += st.blocks * 512
    }
    if (st.isDirectory()) {
      for (const name of await readdir(path)) stack.push(join(path, name))
    }
  }
  return { size, inodes: seen.size }
}
