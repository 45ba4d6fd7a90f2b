/**
 * `npm run bench:gzindex`: the gzip index of a plain gzip layer (python3 rootfs, gzip -6).
 * For each checkpoint spacing: index size as a fraction of the layer, indexing throughput, and
 * fetch amplification (compressed bytes fetched per byte asked for) for cold 4 KiB reads of
 * random files and for reading every file once with a shared memory cache.
 *   usage: npm run bench:gzindex [-- --spacings 1,4,16] [--files 200]
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { MemoryCache } from '../src/cache/memory-cache.js'
import { FileRangeSource } from '../src/estargz/file-source.js'
import { buildIndex } from '../src/gzindex/build.js'
import { decodeIndex } from '../src/gzindex/format.js'
import { GzIndexReader } from '../src/gzindex/reader.js'

const REPO = new URL('..', import.meta.url).pathname
const argv = process.argv.slice(2)
const opt = (name: string, dflt: string): string => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1]! : dflt }
const spacings = opt('spacings', '1,4,16').split(',').map(Number)
const sample = Number(opt('files', '200'))

const tarPath = execFileSync('bash', [join(REPO, 'scripts/fixtures/python-rootfs.sh')], { encoding: 'utf8' }).trim()
const gzPath = `${tarPath}.gzip6.gz`
if (!existsSync(gzPath)) execFileSync('sh', ['-c', `gzip -6 -c '${tarPath}' > '${gzPath}.tmp' && mv '${gzPath}.tmp' '${gzPath}'`])
const size = statSync(gzPath).size
const digest = `sha256:${createHash('sha256').update(readFileSync(gzPath)).digest('hex')}`
console.log(`layer: python3 rootfs, gzip -6: ${(size / 1e6).toFixed(1)} MB compressed, ${(statSync(tarPath).size / 1e6).toFixed(1)} MB tar`)
console.log('| spacing | spans | index bytes | index / layer | index time (s) | MB/s (uncompressed) | MB/s (compressed) | cold 4 KiB read: fetched per read | amplification, all files once |')
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
for (const mib of spacings) {
  const t0 = performance.now()
  const built = await buildIndex(createReadStream(gzPath, { highWaterMark: 1 << 20 }), { layer: { digest, size }, spacing: mib << 20 })
  const secs = (performance.now() - t0) / 1000
  const index = decodeIndex(built.blob, { digest, size })
  const src = await FileRangeSource.open(gzPath)
  // Cold 4 KiB reads: a new reader (no cache) per file, files picked evenly by position.
  const regs = index.files.filter((f) => f.type === 'reg' && f.size > 0)
  let fetched = 0
  const step = Math.max(1, Math.floor(regs.length / sample))
  let reads = 0
  for (let i = 0; i < regs.length && reads < sample; i += step, reads++) {
    const r = new GzIndexReader(index, src)
    await r.read(regs[i]!, 0, 4096)
    fetched += r.stats.bytesFetched
  }
  // Every file once, memory cache big enough for the layer: close to 1 means no re-fetch.
  const all = new GzIndexReader(index, src, { cache: new MemoryCache({ maxBytes: 1 << 30 }) })
  let asked = 0
  for (const f of regs) { await all.read(f, 0, f.size); asked += f.size }
  await src.close()
  const u = index.uncompressedSize
  console.log(`| ${mib} MiB | ${index.spans.length} | ${built.blob.length} | ${(100 * built.blob.length / size).toFixed(2)}% | ${secs.toFixed(1)} | ${(u / 1e6 / secs).toFixed(1)} | ${(size / 1e6 / secs).toFixed(1)} | ${(fetched / reads / 1e6).toFixed(2)} MB (${(fetched / reads / 4096).toFixed(0)}×) | ${(all.stats.bytesFetched / size).toFixed(2)}× of the layer for ${(asked / 1e6).toFixed(0)} MB of files |`)
}
