// stargzd-test: unit
/**
 * Issue #17: DirCache.createWriter (big entries streamed into the cache) reserves its size before
 * the temp file exists, so the directory — shards and tmp/ — never holds more than maxBytes,
 * also while a streamed write and small puts are in flight together. A writer that cannot fit
 * beside those in flight is not created; abort and a failed commit give the room back.
 */
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
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

const keyOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
const KiB = 1024

async function fresh(t: { teardown(fn: () => unknown): void }, maxBytes: number): Promise<{ c: DirCache; root: string }> {
  const root = await mkdtemp(join(tmpdir(), 'sgd-issue17w-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const c = await DirCache.open({ root, maxBytes })
  t.teardown(() => c.close())
  return { c, root }
}

t.test('a streamed write makes room before its bytes land and stays within the cap', async (t) => {
  const maxBytes = 1024 * KiB
  const { c, root } = await fresh(t, maxBytes)
  for (let i = 0; i < 16; i++) { const d = randomBytes(60 * KiB); await c.put(keyOf(d), d) }
  t.ok(await bytesOnDisk(root) > 900 * KiB, 'the cache is nearly full before the big write')
  const big = randomBytes(600 * KiB)
  const w = await c.createWriter(keyOf(big), big.length)
  t.ok(w, 'a writer for an entry that fits the cap')
  t.ok(await bytesOnDisk(root) + big.length <= maxBytes, 'room for the whole entry was made before the first byte')
  let max = 0
  for (let off = 0; off < big.length; off += 64 * KiB) {
    // Small puts in flight beside the stream: they must not use the room it reserved.
    const small = randomBytes(40 * KiB)
    await Promise.all([w?.write(big.subarray(off, off + 64 * KiB)), c.put(keyOf(small), small)])
    max = Math.max(max, await bytesOnDisk(root))
  }
  await w?.commit()
  max = Math.max(max, await bytesOnDisk(root))
  t.ok(max <= maxBytes, `largest size on disk seen ${max} ≤ maxBytes ${maxBytes}`)
  t.ok(c.has(keyOf(big)), 'the streamed entry is in the cache')
  t.ok((await c.readRange(keyOf(big), big.length, 1000, 5000))?.equals(big.subarray(1000, 6000)), 'and reads back')
  t.ok(c.stats().bytes <= maxBytes, `accounted ${c.stats().bytes} ≤ cap`)
})

t.test('a writer that cannot fit beside the writes in flight is not created; abort gives room back', async (t) => {
  const maxBytes = 1024 * KiB
  const { c, root } = await fresh(t, maxBytes)
  const a = randomBytes(600 * KiB)
  const b = randomBytes(600 * KiB)
  const wa = await c.createWriter(keyOf(a), a.length)
  t.ok(wa, 'first writer')
  t.equal(await c.createWriter(keyOf(b), b.length), undefined, 'second does not fit beside the first')
  await wa?.write(a.subarray(0, 100 * KiB))
  await wa?.abort()
  t.equal((await readdir(join(root, 'tmp'))).length, 0, 'abort removed the temp file')
  const wb = await c.createWriter(keyOf(b), b.length)
  t.ok(wb, 'after the abort the second fits')
  await t.rejects(wb?.write(Buffer.concat([b, Buffer.alloc(1)])) ?? Promise.resolve(), /more than the/, 'writing past the reserved size is refused')
  await wb?.write(b)
  await wb?.commit()
  t.ok(c.has(keyOf(b)))
  t.ok(await bytesOnDisk(root) <= maxBytes)
})

t.test('a short commit fails, removes its file and releases the room', async (t) => {
  const maxBytes = 1024 * KiB
  const { c, root } = await fresh(t, maxBytes)
  const a = randomBytes(700 * KiB)
  const w = await c.createWriter(keyOf(a), a.length)
  await w?.write(a.subarray(0, 10 * KiB))
  await t.rejects(w?.commit() ?? Promise.resolve(), /expected/)
  t.equal((await readdir(join(root, 'tmp'))).length, 0, 'no temp file left')
  const w2 = await c.createWriter(keyOf(a), a.length)
  t.ok(w2, 'the room came back')
  await w2?.abort()
})

t.test('temp files of a writer that died are removed at open, not left beside a full cache', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'sgd-issue17o-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const first = await DirCache.open({ root, maxBytes: 1024 * KiB })
  await first.close()
  // A pid that is certainly gone: a child that has exited.
  const dead = spawnSync('true').pid as number
  const hex = 'ab'.repeat(32)
  await writeFile(join(root, 'tmp', `${hex}.${dead}.0123456789ab`), randomBytes(300 * KiB))
  await writeFile(join(root, 'tmp', `${hex}.${process.pid}.0123456789ab`), randomBytes(1 * KiB))
  const c = await DirCache.open({ root, maxBytes: 1024 * KiB })
  t.teardown(() => c.close())
  t.same((await readdir(join(root, 'tmp'))).sort(), [`${hex}.${process.pid}.0123456789ab`], 'the dead writer\'s temp file is gone; a live process\'s (ours) stays until stale')
})
