/**
 * Read-path benchmark: ChunkReader over a local eStargz blob.
 *
 *   node --import tsx bench/read-path.ts            # 256 MB file, 1 MiB chunks
 *   BENCH_MB=64 BENCH_CHUNK_KB=4096 node --import tsx bench/read-path.ts
 *
 * Rows: cold sequential read (128 KiB reads, 8 in flight, like FUSE with kernel read-ahead)
 * with each decoder strategy, plus the main thread's event-loop utilisation and p99 event-loop
 * delay while it ran (what every other FUSE op on the node would feel); a whole-stream gunzip of
 * the same members (the "full pull" baseline); warm reads from the memory tier and from the
 * directory tier; cold 4 KiB random-read latency. Prints a Markdown table.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip, gunzip } from 'node:zlib'
import { gunzipSync as fflateGunzip } from 'fflate'
import { DirCache } from '../src/cache/dir-cache.js'
import { MemoryCache } from '../src/cache/memory-cache.js'
import { TieredCache } from '../src/cache/tiered-cache.js'
import type { ChunkCache } from '../src/cache/types.js'
import { FileRangeSource } from '../src/estargz/file-source.js'
import { ChunkDigestError, FetchError } from '../src/errors.js'
import type { ChunkDecoder } from '../src/estargz/chunk-decoder.js'
import { EstargzReader } from '../src/estargz/reader.js'
import type { ChunkRef } from '../src/estargz/toc-index.js'
import { ChunkReader } from '../src/reader/chunk-reader.js'
import { WorkerChunkDecoder } from '../src/reader/worker-decoder.js'
import { buildMiniEstargz } from '../harness/mini-estargz.js'

const MB = Number(process.env.BENCH_MB ?? 256)
const CHUNK = Number(process.env.BENCH_CHUNK_KB ?? 1024) * 1024
const SIZE = MB * 1024 * 1024
const READ = 128 * 1024
const IN_FLIGHT = 8
const RANDOM_READS = Number(process.env.BENCH_RANDOM ?? 500)
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3)

const sha = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

/** Half incompressible, half text-like, so inflate does real work at a realistic ratio. */
function makeData(n: number): Buffer {
  const out = Buffer.allocUnsafe(n)
  const words = Array.from({ length: 4096 }, (_, i) => `w${(i * 2654435761) % 99991} `)
  let x = 0x9e3779b9
  for (let off = 0; off < n; off += 64 * 1024) {
    const end = Math.min(n, off + 64 * 1024)
    if ((off / (64 * 1024)) % 2 === 0) {
      for (let i = off; i < end; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; out[i] = x & 0xff }
    } else {
      let i = off
      while (i < end) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; i += out.write(words[x & 4095] as string, i, end - i, 'latin1') }
    }
  }
  return out
}

function fail(ref: ChunkRef, e: unknown): never {
  throw new FetchError(`member of ${ref.name} at ${ref.compressedOffset} does not inflate: ${(e as Error).message}`)
}

/** node:zlib async (libuv pool) inflate; sha256 on the main thread. */
const libuvDecoder: ChunkDecoder = {
  decode: (member, ref) => new Promise((resolve, reject) => {
    gunzip(member, { maxOutputLength: ref.chunkSize + (1 << 20) }, (err, out) => {
      if (err) { reject(err); return }
      const data = out.subarray(0, ref.chunkSize)
      const actual = sha(data)
      if (actual !== ref.digest) reject(new ChunkDigestError(ref.name, ref.chunkOffset, ref.digest ?? '', actual))
      else resolve(data)
    })
  }),
}

/** fflate on the main thread; sha256 on the main thread. */
const fflateDecoder: ChunkDecoder = {
  async decode(member, ref) {
    let out: Uint8Array
    try { out = fflateGunzip(member) } catch (e) { fail(ref, e) }
    const data = Buffer.from(out.buffer, out.byteOffset, ref.chunkSize)
    const actual = sha(data)
    if (actual !== ref.digest) throw new ChunkDigestError(ref.name, ref.chunkOffset, ref.digest ?? '', actual)
    return data
  },
}

/** Byte checks queued by the timed runs, run right after each timed window. */
const checks: Array<() => void> = []

interface Row { what: string; mbps?: number; elu?: number; lagP99?: number; note?: string }

async function timed(fn: () => Promise<number>): Promise<{ mbps: number; elu: number; lagP99: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  const e0 = performance.eventLoopUtilization()
  const t0 = performance.now()
  const bytes = await fn()
  const ms = performance.now() - t0
  const elu = performance.eventLoopUtilization(e0).utilization
  h.disable()
  for (const c of checks.splice(0)) c()
  return { mbps: bytes / 1e6 / (ms / 1000), elu, lagP99: h.percentile(99) / 1e6 }
}

/** Reads the file in order; the bytes are checked after the timed window. */
async function sequential(reader: ChunkReader, name: string, expectSha: string): Promise<number> {
  const parts: Buffer[] = new Array<Buffer>(Math.ceil(SIZE / READ))
  checks.push(() => {
    const h = createHash('sha256')
    for (const p of parts) h.update(p)
    if ('sha256:' + h.digest('hex') !== expectSha) throw new Error('sequential read returned wrong bytes')
  })
  let next = 0
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < parts.length) {
      const i = next++
      // No copy: FUSE copies into the kernel's buffer; here a view is enough to check the bytes.
      parts[i] = await reader.read(name, i * READ, READ)
    }
  }))
  return SIZE
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'stargzd-bench-'))
  const rows: Row[] = []
  const pool = new WorkerChunkDecoder()
  try {
    let t0 = performance.now()
    const data = makeData(SIZE)
    const dataSha = sha(data)
    const mini = buildMiniEstargz([{ name: 'big.bin', data, chunkSize: CHUNK }])
    const blobPath = join(dir, 'blob')
    await writeFile(blobPath, mini.blob)
    const blobBytes = mini.blob.length
    console.error(`built ${MB} MB file in ${CHUNK / 1024} KiB chunks: blob ${(blobBytes / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    const source = await FileRangeSource.open(blobPath)
    const er = await EstargzReader.open(source, { tocDigest: mini.tocDigest })
    const mkReader = (cache: ChunkCache, decoder: ChunkDecoder): ChunkReader => new ChunkReader({ reader: er, source, cache, decoder })

    // Baseline: one gunzip stream over all payload members, as a full pull would unpack them.
    const baseline = await timed(async () => {
      let n = 0
      const body = await source.read(0, mini.tocOffset)
      await pipeline(Readable.from([body]), createGunzip(), async function* (src) { for await (const c of src) n += (c as Buffer).length; yield* [] })
      return n
    })
    rows.push({ what: 'gunzip whole stream (node:zlib, same members, no verify)', ...baseline })

    const strategies: Array<[string, ChunkDecoder]> = [
      ['worker pool (2 threads, chosen)', pool],
      ['node:zlib async (libuv pool) + sha256 on main', libuvDecoder],
      ['fflate on main + sha256 on main', fflateDecoder],
      ['node:zlib sync on main', new WorkerChunkDecoder({ syncBelowBytes: Number.MAX_SAFE_INTEGER })],
    ]
    // Strategies interleaved, REPEAT rounds, median by MB/s: the first round also warms the JIT
    // and the workers, and a shared machine's noise hits every strategy alike.
    const results = new Map<string, Array<{ mbps: number; elu: number; lagP99: number; requests: number }>>()
    for (let round = 0; round < REPEAT; round++) {
      for (const [name, decoder] of strategies) {
        const r = mkReader(new MemoryCache({ maxBytes: 64 << 20 }), decoder)
        const res = await timed(() => sequential(r, 'big.bin', dataSha))
        results.set(name, [...(results.get(name) ?? []), { ...res, requests: r.stats().fetchRequests }])
      }
    }
    for (const [name, runs] of results) {
      const sorted = [...runs].sort((a, b) => a.mbps - b.mbps)
      const med = sorted[Math.floor(sorted.length / 2)] as (typeof runs)[number]
      rows.push({ what: `cold sequential, ${name}`, mbps: med.mbps, elu: med.elu, lagP99: med.lagP99, note: `median of ${runs.length} (${sorted.map((x) => x.mbps.toFixed(0)).join('/')}), ${med.requests} requests` })
    }

    // Cold through the real tiers (memory 64 MiB + directory cache), then warm from each tier.
    const disk = await DirCache.open({ root: join(dir, 'cache'), maxBytes: 2 * SIZE })
    const tiered = new TieredCache(new MemoryCache({ maxBytes: 64 << 20 }), disk)
    const coldTiered = mkReader(tiered, pool)
    rows.push({ what: 'cold sequential, worker pool, memory + directory cache', ...(await timed(() => sequential(coldTiered, 'big.bin', dataSha))) })
    await coldTiered.flush()
    const fromDisk = mkReader(new TieredCache(new MemoryCache({ maxBytes: 64 << 20 }), disk), pool)
    rows.push({ what: 'warm sequential from directory cache (page cache warm, sha256 re-check)', ...(await timed(() => sequential(fromDisk, 'big.bin', dataSha))), note: `${fromDisk.stats().fetchRequests} requests` })
    const mem = new MemoryCache({ maxBytes: 2 * SIZE })
    const warmMem = mkReader(mem, pool)
    await sequential(warmMem, 'big.bin', dataSha)
    rows.push({ what: 'warm sequential from memory cache', ...(await timed(() => sequential(warmMem, 'big.bin', dataSha))) })

    // Cold 4 KiB random reads, one at a time, each on a fresh cache so every read is a miss.
    const lat: number[] = []
    let seed = 12345
    const cold = mkReader(new MemoryCache({ maxBytes: 0 }), pool)
    t0 = performance.now()
    for (let i = 0; i < RANDOM_READS; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0
      const off = Math.floor((seed / 2 ** 32) * (SIZE - 4096))
      const s = performance.now()
      const got = await cold.read('big.bin', off, 4096)
      lat.push(performance.now() - s)
      if (!got.equals(data.subarray(off, off + 4096))) throw new Error(`random read at ${off} returned wrong bytes`)
    }
    lat.sort((a, b) => a - b)
    const pct = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] as number
    rows.push({ what: `cold 4 KiB random reads ×${RANDOM_READS} (each fetches + inflates one ${CHUNK / 1024} KiB chunk)`, note: `p50 ${pct(0.5).toFixed(2)} ms, p99 ${pct(0.99).toFixed(2)} ms, ${(RANDOM_READS / ((performance.now() - t0) / 1000)).toFixed(0)} IOPS` })

    console.log(`\n### Read path, ${MB} MB file, ${CHUNK / 1024} KiB chunks, blob ${(blobBytes / 1e6).toFixed(1)} MB (Node ${process.version})\n`)
    console.log('| case | MB/s (uncompressed) | main-thread ELU | event-loop delay p99 (ms) | notes |')
    console.log('|---|---:|---:|---:|---|')
    for (const r of rows) {
      console.log(`| ${r.what} | ${r.mbps === undefined ? '' : r.mbps.toFixed(0)} | ${r.elu === undefined ? '' : r.elu.toFixed(2)} | ${r.lagP99 === undefined ? '' : r.lagP99.toFixed(1)} | ${r.note ?? ''} |`)
    }
    await disk.close()
    await source.close()
  } finally {
    await pool.close()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
