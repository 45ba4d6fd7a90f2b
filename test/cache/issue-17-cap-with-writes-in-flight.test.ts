// stargzd-test: unit
/**
 * Found by the soak (issue #17): the directory cache evicted only after a write had landed, so
 * with many writes in flight at once (background fetch) the directory held their sum above
 * maxBytes. Now a write makes room before its bytes reach the disk: whatever is on disk, temp
 * files included, stays within the cap at every moment.
 */
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DirCache } from '../../src/cache/dir-cache.js'

async function bytesOnDisk(dir: string): Promise<number> {
  let n = 0
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const p = join(dir, name)
    const s = await stat(p).catch(() => undefined)
    if (s) n += s.isDirectory() ? await bytesOnDisk(p) : s.size
  }
  return n
}

t.test('many concurrent puts never put the directory over maxBytes', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'sgd-issue17-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const maxBytes = 256 * 1024
  const c = await DirCache.open({ root, maxBytes })
  t.teardown(() => c.close())
  let max = 0
  let watching = true
  const watcher = (async () => {
    while (watching) {
      max = Math.max(max, await bytesOnDisk(root))
      await new Promise((r) => setImmediate(r))
    }
  })()
  for (let round = 0; round < 8; round++) {
    const chunks = Array.from({ length: 12 }, () => randomBytes(48 * 1024))
    await Promise.all(chunks.map((d) => c.put(`sha256:${createHash('sha256').update(d).digest('hex')}`, d)))
    max = Math.max(max, await bytesOnDisk(root))
  }
  watching = false
  await watcher
  t.ok(max <= maxBytes, `largest size on disk seen ${max} ≤ maxBytes ${maxBytes}`)
  t.ok(c.stats().evictions > 0, 'eviction ran')
})
