/**
 * Issue #10 §4: chunk-cache files are 0600 in 0700 directories (a private image's 0600 files
 * must not become readable by local users), also for a root made by an older version.
 * Big entries: written as a verified stream, read by range, re-checked once per process.
 */
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DirCache } from '../../src/cache/dir-cache.js'

function chunk(n: number): { key: string; data: Buffer } {
  const data = randomBytes(n)
  return { key: 'sha256:' + createHash('sha256').update(data).digest('hex'), data }
}

async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'stargzd-dircache-'))
  t.teardown(() => rm(d, { recursive: true, force: true }))
  return d
}

const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o777

t.test('files 0600, directories 0700, whatever the umask allows', async (t) => {
  const root = join(await tempDir(t), 'cache')
  const old = process.umask(0o022)
  t.teardown(() => { process.umask(old) })
  const c = await DirCache.open({ root, maxBytes: 1 << 20 })
  const a = chunk(1000)
  await c.put(a.key, a.data)
  const big = chunk(300_000)
  const w = await c.createWriter(big.key, big.data.length)
  await w?.write(big.data)
  await w?.commit()
  await c.close()
  t.equal(await mode(root), 0o700)
  t.equal(await mode(join(root, 'tmp')), 0o700)
  for (const k of [a.key, big.key]) {
    const hex = k.slice(7)
    t.equal(await mode(join(root, hex.slice(0, 2))), 0o700, 'shard dir')
    t.equal(await mode(join(root, hex.slice(0, 2), hex)), 0o600, 'entry file')
  }
})

t.test('a root left 0755/0644 by an older version is tightened at open', async (t) => {
  const root = join(await tempDir(t), 'cache')
  const a = chunk(100)
  const hex = a.key.slice(7)
  await mkdir(join(root, hex.slice(0, 2)), { recursive: true, mode: 0o755 })
  await mkdir(join(root, 'tmp'), { mode: 0o755 })
  await writeFile(join(root, hex.slice(0, 2), hex), a.data, { mode: 0o644 })
  await chmod(root, 0o755)
  const c = await DirCache.open({ root, maxBytes: 1 << 20 })
  t.same(await c.get(a.key), a.data)
  await c.close()
  t.equal(await mode(root), 0o700)
  t.equal(await mode(join(root, hex.slice(0, 2))), 0o700)
  t.equal(await mode(join(root, hex.slice(0, 2), hex)), 0o600)
})

t.test('big entries: streamed in, read by range, a damaged file is a miss and removed', async (t) => {
  const root = await tempDir(t)
  const c = await DirCache.open({ root, maxBytes: 8 << 20 })
  const big = chunk(1_000_000)
  t.equal(await c.readRange(big.key, big.data.length, 0, 10), undefined, 'absent')
  t.equal(await c.createWriter(big.key, 9 << 20), undefined, 'larger than the cache: not stored')
  const w = await c.createWriter(big.key, big.data.length)
  for (let off = 0; off < big.data.length; off += 65536) await w?.write(big.data.subarray(off, off + 65536))
  await w?.commit()
  t.same(await c.readRange(big.key, big.data.length, 123_456, 4096), big.data.subarray(123_456, 127_552))
  t.equal(await c.readRange(big.key, 999, 0, 10), undefined, 'another size: a miss')
  t.same(await readdir(join(root, 'tmp')), [], 'no temp files left')
  await c.close()
  // A new process re-checks the file once before serving any range of it.
  const hex = big.key.slice(7)
  const damaged = Buffer.from(big.data)
  damaged[500_000] = (damaged[500_000] ?? 0) ^ 1
  await writeFile(join(root, hex.slice(0, 2), hex), damaged)
  const c2 = await DirCache.open({ root, maxBytes: 8 << 20 })
  t.equal(await c2.readRange(big.key, big.data.length, 0, 10), undefined, 'damaged: a miss')
  t.equal(c2.stats().corrupt, 1)
  await t.rejects(stat(join(root, hex.slice(0, 2), hex)), { code: 'ENOENT' }, 'removed')
  // An aborted writer leaves nothing.
  const w2 = await c2.createWriter(big.key, big.data.length)
  await w2?.write(big.data.subarray(0, 1000))
  await w2?.abort()
  t.equal(await c2.readRange(big.key, big.data.length, 0, 10), undefined)
  t.same(await readdir(join(root, 'tmp')), [])
  await c2.close()
})

t.test('many puts at once are written a few at a time (no EMFILE), all readable meanwhile and after', async (t) => {
  const root = await tempDir(t)
  const c = await DirCache.open({ root, maxBytes: 64 << 20 })
  const chunks = Array.from({ length: 3000 }, () => chunk(50))
  const puts = chunks.map((x) => c.put(x.key, x.data))
  t.same(await c.get(chunks[2999]!.key), chunks[2999]!.data, 'a queued write is served from memory')
  await Promise.all(puts)
  t.equal(c.stats().entries, 3000)
  for (const x of chunks.slice(0, 50)) t.same(await c.get(x.key), x.data)
  await c.close()
})
