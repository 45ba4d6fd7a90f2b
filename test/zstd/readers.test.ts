/**
 * zstd:chunked layers made by the reference (`ctr-remote image convert --zstdchunked --oci`,
 * test/fixtures/zstd) read byte-exact on every in-process and CLI reader path, against what
 * `zstd -dc | tar -x` gives: EstargzReader (inline decoder), ChunkReader over the worker pool
 * (every chunk through a worker, and the default small-chunk inline split), `stargz toc`,
 * `stargz cat`, `stargz verify`.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { ChunkReader } from '../../src/reader/chunk-reader.js'
import { WorkerChunkDecoder } from '../../src/reader/worker-decoder.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { FileRangeSource } from '../../src/estargz/file-source.js'
import { REPO, runStargz } from '../../harness/cli.js'
import { tempDir } from '../../harness/tree.js'

const FX = join(REPO, 'test/fixtures/zstd')
const NAMES = ['tree', 'tree-chunked', 'busybox']

interface Sidecar { tocDigest: string; layerAnnotations: Record<string, string>; footer: { tocOffset: number } }

t.test('ctr-remote zstd:chunked fixtures on every reader path', async (t) => {
  const dir = await tempDir(t, 'zstd-readers-')
  const pool = new WorkerChunkDecoder({ syncBelowBytes: 0 })
  t.teardown(() => pool.close())
  const mixed = new WorkerChunkDecoder()
  t.teardown(() => mixed.close())

  for (const name of NAMES) {
    await t.test(name, async (t) => {
      const blobPath = join(FX, `${name}.zst`)
      const side = JSON.parse(await readFile(join(FX, `${name}.json`), 'utf8')) as Sidecar
      const want = join(dir, name)
      await mkdir(want)
      execFileSync('sh', ['-c', `zstd -dc "$0" | tar --numeric-owner -xpf - -C "$1"`, blobPath, want])

      const src = await FileRangeSource.open(blobPath)
      t.teardown(() => src.close())
      const r = await BlobReader.open(src, { tocDigest: side.tocDigest })
      t.equal(r.footer.kind, 'zstd', 'zstd:chunked footer recognised')
      t.equal(r.tocDigest, side.layerAnnotations['containerd.io/snapshot/stargz/toc.digest'], 'TOC digest equals the toc.digest annotation')
      t.equal(r.footer.tocOffset, side.footer.tocOffset)
      const [off, clen, rlen, type] = (side.layerAnnotations['io.containers.zstd-chunked.manifest-position'] ?? '').split(':').map(Number)
      t.same([off, clen, rlen, type], [r.footer.tocOffset, r.footer.tocLength, r.footer.tocRawSize, 1], 'footer agrees with the manifest-position annotation')

      const viaPool = new ChunkReader({ reader: r.meta, cache: new MemoryCache({ maxBytes: 64 << 20 }), decoder: pool, readaheadBytes: 0 })
      const viaMixed = new ChunkReader({ reader: r.meta, cache: new MemoryCache({ maxBytes: 64 << 20 }), decoder: mixed })
      t.teardown(() => viaPool.close())
      t.teardown(() => viaMixed.close())

      let files = 0
      let bytes = 0
      let mismatches = 0
      for (const e of r.toc.entries) {
        if (e.type !== 'reg' || (e.size ?? 0) === 0) continue
        const expected = await readFile(join(want, e.name))
        const got = [
          await r.readFile(e.name),
          await viaPool.read(e.name, 0, expected.length),
          await viaMixed.read(e.name, 0, expected.length),
        ]
        // An unaligned range that crosses chunk boundaries where there are any.
        const a = Math.floor(expected.length / 3)
        const b = Math.min(expected.length, a + 1_100_000)
        got.push(Buffer.concat([expected.subarray(0, a), await r.readFile(e.name, a, b - a), expected.subarray(b)]))
        got.push(Buffer.concat([expected.subarray(0, a), await viaPool.read(e.name, a, b - a), expected.subarray(b)]))
        for (const g of got) if (!g.equals(expected)) mismatches++
        files++
        bytes += expected.length
      }
      t.equal(mismatches, 0, `${files} files, ${bytes} bytes byte-exact on 5 reader paths`)
      t.ok(viaPool.stats().chunksDecoded > 0 && pool.stats.workerDecodes > 0, 'chunks went through the decode workers')

      const toc = await runStargz(['toc', blobPath])
      t.equal(toc.code, 0, `stargz toc: ${toc.stderr}`)
      const printed = JSON.parse(toc.stdout.toString()) as { entries: unknown[] }
      t.same(printed.entries, JSON.parse(JSON.stringify(r.toc.entries)), 'stargz toc prints the validated TOC')
      const stored = JSON.parse(await readFile(join(FX, `${name}.toc.json`), 'utf8')) as { entries: unknown[] }
      t.equal(printed.entries.length, stored.entries.length, `all ${stored.entries.length} stored TOC entries`)
      const ver = await runStargz(['verify', blobPath, '--toc-digest', side.tocDigest])
      t.equal(ver.code, 0, `stargz verify: ${ver.stderr}`)
      t.match(JSON.parse(ver.stdout.toString()), { footer: 'zstd', unverifiedChunks: 0 })
      const big = r.toc.entries.filter((e) => e.type === 'reg').sort((x, y) => (y.size ?? 0) - (x.size ?? 0))[0]
      if (big) {
        const cat = await runStargz(['cat', blobPath, big.name])
        t.equal(cat.code, 0, `stargz cat: ${cat.stderr}`)
        t.ok(cat.stdout.equals(await readFile(join(want, big.name))), `stargz cat ${big.name} is byte-exact`)
      }
    })
  }
})
