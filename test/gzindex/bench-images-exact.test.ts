// stargzd-test: e2e
/**
 * Every file of every layer of the `stargz bench` images, as pushed for `--modes gzindex` (the
 * plain gzip layers, indexed at the default spacing), read through the index from the layer blob
 * and compared with `tar -x` of the same layer. python3 always runs (about a minute); the huge
 * image (3 layers, ~1.5 GB) only with STARGZD_HEAVY_TESTS=1, since it costs several minutes of
 * both cores (run once per change of src/gzindex, recorded in bench/RESULTS.md).
 */
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { lstat, mkdtemp, open, readlink, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildBenchImage, type BenchImageName } from '../../src/bench/image/images.js'
import { FileRangeSource } from '../../src/estargz/file-source.js'
import { buildIndex } from '../../src/gzindex/build.js'
import { decodeIndex } from '../../src/gzindex/format.js'
import { cleanName, GzIndexReader } from '../../src/gzindex/reader.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'

t.setTimeout(3_600_000)
const STEP = 8 << 20

async function checkImage(t: Test, name: BenchImageName): Promise<void> {
  const image = await buildBenchImage(name, { log: (m) => t.comment(m) })
  let files = 0
  let bytes = 0
  for (const [li, layer] of image.layout.layers.entries()) {
    const blobPath = join(image.layout.dir, 'blobs', 'sha256', layer.digest.slice('sha256:'.length))
    const t0 = performance.now()
    const built = await buildIndex(createReadStream(blobPath, { highWaterMark: 1 << 20 }), { layer: { digest: layer.digest, size: layer.size } })
    t.equal(`sha256:${built.inputSha256}`, layer.digest, `${name} layer ${li}: indexed (${built.header.spans.length} spans, ${built.header.files.length} entries, ${((performance.now() - t0) / 1000).toFixed(1)} s)`)
    const index = decodeIndex(built.blob, { digest: layer.digest, size: layer.size })
    const out = await mkdtemp(join(tmpdir(), `gzexact-${name}-${li}-`))
    try {
      execFileSync('sh', ['-c', `gzip -dc '${blobPath}' | tar -x -C '${out}' --numeric-owner --no-same-owner --no-same-permissions`])
      const src = await FileRangeSource.open(blobPath)
      try {
        const reader = new GzIndexReader(index, src, { cache: new MemoryCache({ maxBytes: 128 << 20 }) })
        const seen = new Set<string>()
        let bad = 0
        for (const f of [...index.files].reverse()) {
          const p = cleanName(f.name)
          if (seen.has(p) || p === '' || p.split('/').pop()!.startsWith('.wh.')) continue
          seen.add(p)
          const onDisk = join(out, p)
          if (f.type === 'symlink') { if ((await readlink(onDisk)) !== f.linkName) { bad++; t.fail(`${p}: symlink target`) } continue }
          if (f.type !== 'reg' && f.type !== 'hardlink') continue
          const target = f.type === 'hardlink' ? reader.lookup(f.linkName!) : f
          if (!target || target.type !== 'reg') { bad++; t.fail(`${p}: hardlink to nothing`); continue }
          if ((await lstat(onDisk)).size !== target.size) { bad++; t.fail(`${p}: size`); continue }
          const fh = await open(onDisk)
          try {
            for (let off = 0; off < target.size; off += STEP) {
              const got = await reader.read(target, off, STEP)
              const want = Buffer.alloc(Math.min(STEP, target.size - off))
              await fh.read(want, 0, want.length, off)
              if (!got.equals(want)) { bad++; t.fail(`${name} layer ${li}: ${p} differs at ${off}`); break }
            }
          } finally {
            await fh.close()
          }
          files++
          bytes += target.size
        }
        t.equal(bad, 0, `${name} layer ${li}: every file equals tar -x`)
      } finally {
        await src.close()
      }
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  }
  t.comment(`${name}: ${files} files, ${(bytes / 1e6).toFixed(1)} MB read through the index, byte-exact`)
  t.ok(files > 0)
}

t.test('python3 bench image: every file through the index equals tar -x', (t) => checkImage(t, 'python3'))
t.test('huge bench image: every file through the index equals tar -x', { skip: process.env.STARGZD_HEAVY_TESTS === '1' ? false : 'set STARGZD_HEAVY_TESTS=1 (several minutes of both cores)' }, (t) => checkImage(t, 'huge'))
