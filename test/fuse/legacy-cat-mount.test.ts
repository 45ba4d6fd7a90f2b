/**
 * Issue #9 §2: one byte path. A legacy (CRFS-style) TOC whose multi-chunk files carry only a
 * whole-file digest used to verify through `stargz cat` and fail with EIO through a mount. Both
 * now read through ChunkReader: the same bytes, and the same refusals.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { LayerMount } from '../../src/fuse/layer-fs.js'
import { openLayer } from '../../src/layer/layer.js'
import { runStargz } from '../../harness/cli.js'
import { BufferSource, buildMiniEstargz } from '../../harness/mini-estargz.js'
import { prng } from '../reader/fixtures.js'
import { scratch } from '../../harness/fuse-fixtures.js'

function cat(path: string): Promise<{ code: number; out: Buffer; err: string }> {
  return new Promise((resolve) => {
    execFile('cat', [path], { encoding: 'buffer', maxBuffer: 1 << 26 }, (e, out, err) => {
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, out, err: err.toString() })
    })
  })
}

const noChunkDigests = (toc: { entries: Array<Record<string, unknown>> }): void => { for (const e of toc.entries) delete e.chunkDigest }

t.test('legacy multi-chunk files read the same through stargz cat and through a FUSE mount', async (t) => {
  const dir = await scratch(t)
  const files = [
    { name: 'multi.bin', data: prng(700_000, 7), chunkSize: 64 * 1024 },
    { name: 'odd.bin', data: prng(250_001, 8), chunkSize: 100_000 },
    { name: 'single.txt', data: Buffer.from('one chunk, covered by its file digest\n') },
  ]
  const m = buildMiniEstargz(files, { legacy: true, mutateToc: noChunkDigests })
  const blob = join(dir, 'legacy.stargz')
  await writeFile(blob, m.blob)
  const layer = await openLayer({ digest: 'sha256:' + 'e'.repeat(64), source: new BufferSource(m.blob), cache: new MemoryCache({ maxBytes: 64 << 20 }), noPrefetch: true, noBackgroundFetch: true })
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const mount = await LayerMount.mount(layer, mnt, { readAheadKib: 0 })
  t.teardown(async () => { await mount.close(); await layer.close() })

  for (const f of files) {
    const viaCli = await runStargz(['cat', blob, f.name])
    t.equal(viaCli.code, 0, `stargz cat ${f.name}: ${viaCli.stderr}`)
    const viaMount = await cat(join(mnt, f.name))
    t.equal(viaMount.code, 0, `cat through the mount ${f.name}: ${viaMount.err}`)
    t.same(viaCli.stdout, f.data, `${f.name}: stargz cat gives the file`)
    t.same(viaMount.out, f.data, `${f.name}: the mount gives the same bytes`)
  }
  const v = await runStargz(['verify', blob])
  t.equal(v.code, 0, v.stderr)
  t.match(JSON.parse(v.stdout.toString()), { files: 3, unverifiedChunks: 0 })
})

t.test('a legacy file whose content does not match its file digest fails the same way in both', async (t) => {
  const dir = await scratch(t)
  const data = prng(300_000, 9)
  const m = buildMiniEstargz([{ name: 'f', data, chunkSize: 64 * 1024 }], {
    legacy: true,
    mutateToc: (toc) => { noChunkDigests(toc); toc.entries[0]!.digest = 'sha256:' + '1'.repeat(64) },
  })
  const blob = join(dir, 'lying.stargz')
  await writeFile(blob, m.blob)
  const layer = await openLayer({ digest: 'sha256:' + 'f'.repeat(64), source: new BufferSource(m.blob), cache: new MemoryCache({ maxBytes: 64 << 20 }), noPrefetch: true, noBackgroundFetch: true })
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const mount = await LayerMount.mount(layer, mnt, { readAheadKib: 0 })
  t.teardown(async () => { await mount.close(); await layer.close() })
  const viaCli = await runStargz(['cat', blob, 'f'])
  t.not(viaCli.code, 0)
  t.match(viaCli.stderr, /digest mismatch/)
  t.equal(viaCli.stdout.length, 0, 'no bytes before the file verified')
  const viaMount = await cat(join(mnt, 'f'))
  t.not(viaMount.code, 0)
  t.match(viaMount.err, /Input\/output error/)
  t.equal(viaMount.out.length, 0)
  const v = await runStargz(['verify', blob])
  t.not(v.code, 0)
})

t.test('stargz cat of a file in one chunk too big to hold: right bytes (spilled once to a private temp dir)', async (t) => {
  const dir = await scratch(t)
  const data = prng(40 << 20, 12)
  const m = buildMiniEstargz([{ name: 'huge.bin', data }])
  const blob = join(dir, 'huge.stargz')
  await writeFile(blob, m.blob)
  const before = (await readdir(tmpdir())).filter((n) => n.startsWith('stargz-cat-')).length
  const viaCli = await runStargz(['cat', blob, 'huge.bin'])
  t.equal(viaCli.code, 0, viaCli.stderr)
  t.ok(viaCli.stdout.equals(data), 'byte-exact')
  t.equal((await readdir(tmpdir())).filter((n) => n.startsWith('stargz-cat-')).length, before, 'the spill dir is gone')
})
