/**
 * Issue #10 §4: convert-cache-world-readable. Converted private images were 0644 files in 0755
 * directories; they are now 0600 in 0700, whatever the umask, also in a cache made before.
 */
import t from 'tap'
import { mkdir, mkdtemp, readdir, rm, stat, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { ConvertCache, conversionKey, type LayerInput } from '../../src/convert/convert-cache.js'
import { memTar } from '../../harness/memtar.js'

const work = await mkdtemp(join(tmpdir(), 'stargz-convert-perm-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

function input(data: Buffer): () => LayerInput {
  return () => ({
    async *[Symbol.asyncIterator]() { yield data },
    finish: async () => undefined,
    abort: async () => undefined,
  })
}

async function walk(dir: string): Promise<Array<{ path: string; mode: number; dir: boolean }>> {
  const out: Array<{ path: string; mode: number; dir: boolean }> = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    out.push({ path: p, mode: (await stat(p)).mode & 0o777, dir: e.isDirectory() })
    if (e.isDirectory()) out.push(...await walk(p))
  }
  return out
}

t.test('convert-cache-world-readable: files 0600, directories 0700', async (t) => {
  const old = process.umask(0o022)
  t.teardown(() => { process.umask(old) })
  // A cache left by an older version, with 0755 directories.
  const dir = join(work, 'parent', 'cache')
  await mkdir(join(dir, 'results'), { recursive: true, mode: 0o755 })
  await chmod(join(dir, 'results'), 0o755)
  const cache = await ConvertCache.open(dir)
  const tar = memTar([{ name: 'etc/secret', content: 'private image content\n', mode: 0o600 }])
  const tarDigest = 'sha256:' + createHash('sha256').update(tar).digest('hex')
  const r = await cache.convert(tarDigest, {}, input(tar))
  t.equal(r.cached, false)
  await cache.convertIdentity(tarDigest, input(tar))
  t.ok(await cache.get(conversionKey(tarDigest, {})), 'the result is found again')
  const all = await walk(dir)
  t.ok(all.some((e) => !e.dir && e.path.includes('blobs')) && all.some((e) => !e.dir && e.path.includes('results')), 'blobs and results were written')
  for (const e of all) t.equal(e.mode, e.dir ? 0o700 : 0o600, `${e.path.slice(dir.length)} is ${e.mode.toString(8)}`)
  await ConvertCache.open(join(work, 'fresh', 'stargz', 'convert'))
  t.equal((await stat(join(work, 'fresh'))).mode & 0o777, 0o700, 'parents made for a new cache are 0700')
})
