/**
 * zstd decode benchmark: which zstd package for zstd:chunked, measured against our gzip path
 * (node:zlib) in the same run.
 *
 *   npm run bench:zstd                  # 1 MiB and 4 MiB members, 64 KiB members, ~48 MiB each
 *   BENCH_MB=16 npm run bench:zstd
 *
 * Data: real bytes from this machine (/bin/busybox, /usr/bin/* executables, /usr/share text),
 * cut into members of the given size and compressed the way the converters do: gzip level 9
 * (ctr-remote's eStargz default) and zstd level 3 (its zstd:chunked default speed).
 *
 * Rows:
 * 1. Single-member decode on the main thread, MB/s of output (median of 5 passes):
 *    node:zlib gunzipSync (our gzip path), zstd-napi through our bounded decodePrefix,
 *    zstd-napi's own decompress(), fzstd (pure JS).
 * 2. Event-loop impact while decoding the same members: a 1 ms timer's delay p99/max, for decode
 *    on the main thread vs through WorkerChunkDecoder (2 workers; what the daemon uses), gzip
 *    and zstd alike, 4 in flight.
 * Prints Markdown tables.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { gunzipSync, gzipSync } from 'node:zlib'
import { loadavg } from 'node:os'
import { decompress as fzstdDecompress } from 'fzstd'
import { decompress as napiDecompress } from 'zstd-napi'
import { zstdCompressFrame, zstdDecodePrefix } from '../src/estargz/zstd-codec.js'
import { WorkerChunkDecoder } from '../src/reader/worker-decoder.js'
import type { ChunkRef } from '../src/estargz/toc-index.js'
import { sha256Digest } from '../src/estargz/toc-read.js'

const TOTAL = Number(process.env.BENCH_MB ?? 48) * 1024 * 1024
const SIZES = [64 * 1024, 1024 * 1024, 4 * 1024 * 1024]

function corpus(bytes: number): Buffer {
  const parts: Buffer[] = []
  let n = 0
  const add = (p: string): void => {
    try {
      const st = statSync(p)
      if (!st.isFile() || st.size < 4096 || n >= bytes) return
      const b = readFileSync(p)
      parts.push(b)
      n += b.length
    } catch { /* unreadable: skip */ }
  }
  add('/bin/busybox')
  for (const dir of ['/usr/bin', '/usr/share/perl/5.36.0/unicore', '/usr/share/doc']) {
    let names: string[] = []
    try { names = readdirSync(dir).sort() } catch { continue }
    for (const f of names) { if (n >= bytes) break; add(join(dir, f)) }
  }
  const all = Buffer.concat(parts)
  // Repeat if the machine has less than asked for.
  const out = Buffer.alloc(bytes)
  for (let o = 0; o < bytes; o += all.length) all.copy(out, o, 0, Math.min(all.length, bytes - o))
  return out
}

interface Member { raw: Buffer; gz: Buffer; zst: Buffer }

function members(data: Buffer, size: number): Member[] {
  const out: Member[] = []
  for (let o = 0; o + size <= data.length; o += size) {
    const raw = data.subarray(o, o + size)
    out.push({ raw, gz: gzipSync(raw, { level: 9 }), zst: zstdCompressFrame(raw, 3) })
  }
  return out
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? 0
}

function mbps(ms: readonly Member[], f: (m: Member) => Buffer): number {
  const runs: number[] = []
  for (let pass = 0; pass < 5; pass++) {
    let bytes = 0
    const t0 = performance.now()
    for (const m of ms) bytes += f(m).length
    runs.push(bytes / 1e6 / ((performance.now() - t0) / 1000))
  }
  return median(runs)
}

function ref(m: Member, codec: 'gzip' | 'zstd'): ChunkRef {
  return { name: 'bench', chunkOffset: 0, chunkSize: m.raw.length, compressedOffset: 0, compressedEnd: 0, digest: sha256Digest(m.raw), codec }
}

interface LoopRow { mode: string; mbps: number; p99: number; max: number }

/** Decode every member, 4 in flight, while a 1 ms timer measures how late the loop runs. */
async function loopImpact(ms: readonly Member[], codec: 'gzip' | 'zstd', where: 'main' | 'workers', pool: WorkerChunkDecoder): Promise<LoopRow> {
  const h = monitorEventLoopDelay({ resolution: 1 })
  const tick = setInterval(() => {}, 1)
  h.enable()
  const t0 = performance.now()
  let next = 0
  let bytes = 0
  const lane = async (): Promise<void> => {
    while (next < ms.length) {
      const m = ms[next++] as Member
      const r = ref(m, codec)
      let out: Buffer
      if (where === 'workers') out = await pool.decode(codec === 'zstd' ? m.zst : m.gz, r)
      else {
        out = codec === 'zstd' ? zstdDecodePrefix(m.zst, m.raw.length, 'bench') : gunzipSync(m.gz)
        if (sha256Digest(out) !== r.digest) throw new Error('bench: wrong bytes')
        await new Promise((res) => setImmediate(res))
      }
      bytes += out.length
    }
  }
  await Promise.all([lane(), lane(), lane(), lane()])
  const secs = (performance.now() - t0) / 1000
  h.disable()
  clearInterval(tick)
  return { mode: `${codec}, ${where === 'main' ? 'main thread (sync)' : 'WorkerChunkDecoder (2 workers)'}`, mbps: bytes / 1e6 / secs, p99: h.percentile(99) / 1e6, max: h.max / 1e6 }
}

async function main(): Promise<void> {
  const data = corpus(TOTAL)
  console.log(`# zstd decode bench — ${new Date().toISOString()}, Node ${process.version}, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}, ${(TOTAL / 1048576).toFixed(0)} MiB corpus per member size\n`)
  console.log('| member | gzip -9 ratio | zstd -3 ratio | node:zlib gunzipSync MB/s | zstd-napi (ours, bounded) MB/s | zstd-napi decompress() MB/s | fzstd MB/s |')
  console.log('|---:|---:|---:|---:|---:|---:|---:|')
  const sets = new Map<number, Member[]>()
  for (const size of SIZES) {
    const ms = members(data, size)
    sets.set(size, ms)
    const raw = ms.reduce((n, m) => n + m.raw.length, 0)
    const gz = ms.reduce((n, m) => n + m.gz.length, 0)
    const zst = ms.reduce((n, m) => n + m.zst.length, 0)
    const z = mbps(ms, (m) => gunzipSync(m.gz))
    const ours = mbps(ms, (m) => zstdDecodePrefix(m.zst, m.raw.length, 'bench'))
    const napi = mbps(ms, (m) => napiDecompress(m.zst))
    const fz = mbps(ms, (m) => Buffer.from(fzstdDecompress(m.zst)))
    for (const m of ms.slice(0, 3)) if (!zstdDecodePrefix(m.zst, m.raw.length, 'check').equals(m.raw)) throw new Error('bench: zstd round trip failed')
    console.log(`| ${size / 1024} KiB | ${(raw / gz).toFixed(2)} | ${(raw / zst).toFixed(2)} | ${z.toFixed(0)} | ${ours.toFixed(0)} | ${napi.toFixed(0)} | ${fz.toFixed(0)} |`)
  }
  console.log('\nEvent-loop delay while decoding (1 ms timer; 4 decodes in flight; decode + sha256 verify):\n')
  console.log('| member | mode | MB/s | loop delay p99 (ms) | loop delay max (ms) |')
  console.log('|---:|---|---:|---:|---:|')
  const pool = new WorkerChunkDecoder({ syncBelowBytes: 0 })
  try {
    for (const size of [1024 * 1024, 4 * 1024 * 1024]) {
      const ms = sets.get(size) ?? []
      for (const codec of ['gzip', 'zstd'] as const) {
        for (const where of ['main', 'workers'] as const) {
          const r = await loopImpact(ms, codec, where, pool)
          console.log(`| ${size / 1024} KiB | ${r.mode} | ${r.mbps.toFixed(0)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(1)} |`)
        }
      }
    }
  } finally {
    await pool.close()
  }
}

await main()
