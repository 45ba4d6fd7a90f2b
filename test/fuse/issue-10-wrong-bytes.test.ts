/**
 * Issue #10 §2, "wrong bytes from memory": layer B's TOC gives a 64 KiB chunk the chunkDigest of
 * a 32 KiB chunk that layer A already put into the shared memory cache. Before the fix a FUSE
 * read of B took the cached 32 KiB buffer for the 64 KiB chunk and returned a buffer from
 * Buffer.allocUnsafe that was only partly written: the rest was whatever the heap held (other
 * layers' data). The heap is filled with a marker first, so such bytes would show.
 * Now: the cached entry of another length is a miss, B's bytes fail verification, the read is EIO.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { LayerMount } from '../../src/fuse/layer-fs.js'
import { openLayer } from '../../src/layer/layer.js'
import { BufferSource, buildMiniEstargz } from '../../harness/mini-estargz.js'
import { prng } from '../reader/fixtures.js'
import { scratch } from '../../harness/fuse-fixtures.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const MARK = Buffer.from('HEAPMARK')

function cat(path: string): Promise<{ code: number; out: Buffer; err: string }> {
  return new Promise((resolve) => {
    execFile('cat', [path], { encoding: 'buffer', maxBuffer: 1 << 24 }, (e, out, err) => {
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, out, err: err.toString() })
    })
  })
}

t.test('a chunk claiming the digest of a cached chunk of another size: EIO, never heap bytes', async (t) => {
  const dir = await scratch(t)
  const a = prng(32 * 1024, 1)
  const layerA = buildMiniEstargz([{ name: 'a.bin', data: a }])
  const digestA = layerA.toc.entries[0]!.chunkDigest as string
  // B: a 128 KiB file in two 64 KiB chunks; the first claims A's digest. B's own TOC is
  // consistent (one size per digest), so only the cross-layer cache check can catch it.
  const b = prng(128 * 1024, 2)
  const layerB = buildMiniEstargz([{ name: 'b.bin', data: b, chunkSize: 64 * 1024 }], {
    mutateToc: (toc) => { toc.entries[0]!.chunkDigest = digestA },
  })
  const cache = new MemoryCache({ maxBytes: 64 << 20 })
  const mounts: LayerMount[] = []
  const mountpoints: string[] = []
  for (const [name, m] of [['A', layerA], ['B', layerB]] as const) {
    const layer = await openLayer({ digest: `sha256:${name.repeat(64).toLowerCase().replace(/[^0-9a-f]/g, 'b')}`, source: new BufferSource(m.blob), cache, noPrefetch: true, noBackgroundFetch: true })
    const mnt = join(dir, name)
    await mkdir(mnt)
    const mount = await LayerMount.mount(layer, mnt, { readAheadKib: 0 })
    mounts.push(mount)
    mountpoints.push(mnt)
    t.teardown(async () => { await mount.close(); await layer.close() })
  }
  const gotA = await cat(join(mountpoints[0]!, 'a.bin'))
  t.equal(gotA.code, 0)
  t.same(gotA.out, a, 'A reads right, and its chunk is now in the shared memory cache')
  t.equal(cache.stats().entries, 1)

  // Fill the heap with a marker and free it, so uninitialised memory would carry it.
  for (let i = 0; i < 4000; i++) Buffer.allocUnsafe(64 * 1024).fill(MARK)
  gc()

  const gotB = await cat(join(mountpoints[1]!, 'b.bin'))
  t.not(gotB.code, 0, 'the read fails')
  t.match(gotB.err, /Input\/output error/, 'with EIO')
  t.equal(gotB.out.indexOf(MARK), -1, 'no marker bytes came out')
  t.equal(gotB.out.indexOf(a.subarray(0, 1024)), -1, "and none of A's bytes")
  const again = await cat(join(mountpoints[0]!, 'a.bin'))
  t.same(again.out, a, 'A is unaffected')
})
