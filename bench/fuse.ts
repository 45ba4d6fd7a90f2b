/**
 * FUSE adapter benchmark: node --import tsx bench/fuse.ts [--files N]
 *
 * Generates a layer of N (default 100k) small files plus one 64 MiB file, mounts it with the
 * real layer (openLayer, memory cache, no prefetch/background fetch so reads stay cold), and
 * prints a Markdown table: mount time and RSS, find / ls -lR rates, warm read MB/s vs tmpfs,
 * 4 KiB O_DIRECT random read latency (cold = chunk never fetched; daemon-warm = chunk cached).
 * All I/O on the mount runs in child processes: this process serves FUSE.
 */
import type { TocIndex } from '../src/estargz/toc-index.js'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { MemoryCache } from '../src/cache/memory-cache.js'
import type { LayerMountOptions } from '../src/fuse/layer-fs.js'
import { mountLayer, type MountedLayer } from '../src/fs/mount-layer.js'
import { InodeTable } from '../src/fuse/inode-table.js'
import { unmountPath } from '../src/fuse/unmount.js'
import { LayerResolver } from '../src/layer/resolver.js'
import { buildMiniEstargz, type MiniFile } from '../harness/mini-estargz.js'
import { FileRangeSource } from '../src/estargz/file-source.js'

const run = promisify(execFile)
const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const FILES = arg('files', 100_000)
const BIG = 64 << 20
const CHUNK = 256 << 10
const rows: Array<[string, string]> = []
const mb = (b: number): string => (b / 2 ** 20).toFixed(1)

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now()
  const r = await fn()
  return [r, performance.now() - t0]
}

async function sh(cmd: string): Promise<number> {
  const [, ms] = await timed(() => run('sh', ['-c', cmd], { maxBuffer: 1 << 30 }))
  return ms
}

async function ddMBs(path: string): Promise<number> {
  const ms = await sh(`dd if='${path}' of=/dev/null bs=1M 2>/dev/null`)
  return (BIG / 2 ** 20) / (ms / 1000)
}

const RANDOM_READS_PY = `
import os, sys, time, random
path, count, seed, chunk, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
size = os.path.getsize(path)
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
import mmap
buf = mmap.mmap(-1, 4096)
rnd = random.Random(seed)
chunks = list(range(size // chunk))
rnd.shuffle(chunks)
lat = []
for i in range(count):
    c = chunks[i % len(chunks)] if mode == 'cold' else chunks[i % 8]
    off = c * chunk + rnd.randrange(chunk // 4096) * 4096
    t = time.perf_counter()
    os.preadv(fd, [buf], off)
    lat.append((time.perf_counter() - t) * 1e6)
lat.sort()
print(lat[len(lat)//2], lat[int(len(lat)*0.99)-1])
`

/** Child mode: write the benchmark layer and the tmpfs copy of its big file, then exit. */
async function generate(blobPath: string, bigPath: string): Promise<void> {
  const big = Buffer.allocUnsafe(BIG)
  for (let i = 0; i < BIG; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i)
  const files: MiniFile[] = [{ name: 'big.bin', data: big, chunkSize: CHUNK }]
  for (let i = 0; i < FILES; i++) files.push({ name: `d${i % 1000}/f${i}.txt`, data: Buffer.from(`file ${i}\n`) })
  await writeFile(blobPath, buildMiniEstargz(files).blob)
  await writeFile(bigPath, big)
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-bench-'))
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  let mount: MountedLayer | undefined
  // The resolver owns the layers, their blobs, the cache and the decode pool; no prefetch or
  // background fetch, so the figures are the mount's and the reads'.
  let resolver = new LayerResolver({ cache: new MemoryCache({ maxBytes: 512 << 20 }), noPrefetch: true, noBackgroundFetch: true, ttlMs: 0 })
  try {
    // The layer is generated in a child process so this process's RSS reflects only what
    // mounting costs (a generator's freed heap is not returned to the OS).
    const blobPath = join(dir, 'layer.estargz')
    const shmDir = await mkdtemp('/dev/shm/stargz-bench-')
    const genStart = performance.now()
    await run(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--generate', blobPath, join(shmDir, 'big.bin'), `--files=${FILES}`], { maxBuffer: 1 << 20 })
    const { size: blobSize } = await stat(blobPath)
    rows.push(['layer', `${FILES.toLocaleString()} small files + 64 MiB file, blob ${mb(blobSize)} MiB, generated in ${((performance.now() - genStart) / 1000).toFixed(1)} s`])

    const rssBefore = process.memoryUsage().rss
    const [lease, openMs] = await timed(() => resolver.resolve({ digest: 'sha256:' + '0'.repeat(64), open: () => FileRangeSource.open(blobPath) }))
    const layer = lease.layer
    const [table, tableMs] = await timed(async () => ('tree' in layer ? layer.tree : undefined) ?? InodeTable.build(layer.index as TocIndex))
    const cache = (process.argv.includes('--kernel-cache') ? 'kernel' : 'auto') as LayerMountOptions['cache']
    const [mt, mountMs] = await timed(() => mountLayer(lease, mnt, { table, cache: cache ?? 'auto', readAheadKib: 1024 }))
    mount = mt
    // Steady state: the inflated TOC is garbage once parsed, but only goes after a GC (run with
    // --expose-gc, as `npm run bench:fuse` does) and a moment for malloc to return memory.
    await new Promise((r) => setTimeout(r, 1000))
    globalThis.gc?.()
    const rssAfter = process.memoryUsage().rss
    const heapAfter = process.memoryUsage().heapUsed
    rows.push(['TOC parse + index (openLayer)', `${openMs.toFixed(0)} ms`])
    rows.push(['inode table build', `${tableMs.toFixed(0)} ms, ${(table.arrayBytes() / table.count).toFixed(1)} B/entry in its arrays`])
    rows.push(['FUSE mount (kernel INIT done)', `${mountMs.toFixed(0)} ms`])
    rows.push(['RSS (blob on local disk)', `${mb(rssBefore)} MiB before the TOC → ${mb(rssAfter)} MiB mounted (+${mb(rssAfter - rssBefore)} MiB for ${FILES.toLocaleString()} entries; JS heap ${mb(heapAfter)} MiB)`])

    const entries = table.count
    for (const pass of ['cold', 'warm']) {
      const ms = await sh(`find '${mnt}' > /dev/null`)
      rows.push([`find, ${pass} (entries/s)`, `${Math.round(entries / (ms / 1000)).toLocaleString()}`])
    }
    for (const pass of ['cold', 'warm']) {
      const ms = await sh(`ls -lR '${mnt}' > /dev/null`)
      rows.push([`ls -lR, ${pass} (entries/s)`, `${Math.round(entries / (ms / 1000)).toLocaleString()}`])
    }
    const cat = await sh(`cd '${mnt}/d7' && cat * > /dev/null`)
    rows.push(['cat 100 small files, cold (files/s)', `${Math.round(100 / (cat / 1000)).toLocaleString()}`])

    const coldSeq = await ddMBs(join(mnt, 'big.bin'))
    const warm = Math.max(await ddMBs(join(mnt, 'big.bin')), await ddMBs(join(mnt, 'big.bin')))
    const tmpfs = Math.max(await ddMBs(join(shmDir, 'big.bin')), await ddMBs(join(shmDir, 'big.bin')))
    await rm(shmDir, { recursive: true, force: true })
    rows.push(['sequential read 64 MiB, cold (MB/s; local blob, inflate + verify)', coldSeq.toFixed(0)])
    rows.push(['sequential read 64 MiB, warm page cache (MB/s)', warm.toFixed(0)])
    rows.push(['same file on tmpfs (MB/s)', tmpfs.toFixed(0)])

    // Fresh layer for the random reads so no chunk is cached in the daemon yet.
    await mount.close()
    mount = undefined
    // A fresh resolver (fresh cache) so no chunk is cached in the daemon yet.
    await resolver.close()
    resolver = new LayerResolver({ cache: new MemoryCache({ maxBytes: 512 << 20 }), noPrefetch: true, noBackgroundFetch: true, ttlMs: 0 })
    const lease2 = await resolver.resolve({ digest: 'sha256:' + '1'.repeat(64), open: () => FileRangeSource.open(blobPath) })
    mount = await mountLayer(lease2, mnt, { table: ('tree' in lease2.layer ? lease2.layer.tree : undefined) ?? InodeTable.build(lease2.layer.index as TocIndex), readAheadKib: 1024 })
    const py = join(dir, 'rr.py')
    await writeFile(py, RANDOM_READS_PY)
    for (const mode of ['cold', 'daemon-warm']) {
      const { stdout } = await run('python3', [py, join(mnt, 'big.bin'), '200', '7', String(CHUNK), mode === 'cold' ? 'cold' : 'warm'])
      const [p50, p99] = stdout.trim().split(' ').map(Number)
      rows.push([`4 KiB random read O_DIRECT, ${mode} (p50 / p99 µs)`, `${(p50 ?? 0).toFixed(0)} / ${(p99 ?? 0).toFixed(0)}`])
    }
    await mount.close()
    mount = undefined
  } finally {
    if (mount) await mount.close().catch(() => undefined)
    await resolver.close()
    await unmountPath(mnt).catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  }
  process.stdout.write(`| measure | value |\n|---|---|\n${rows.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}\n`)
}

const gi = process.argv.indexOf('--generate')
;(gi >= 0 ? generate(process.argv[gi + 1] as string, process.argv[gi + 2] as string) : main()).then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1) })
