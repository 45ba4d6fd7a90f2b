/**
 * Registry range-read benchmark over loopback against the real docker-registry:
 *   1. one 1 GiB range GET
 *   2. 4,000 random 64 KiB ranges, one at a time
 *   3. the same with 32 in flight
 * each with our RegistryBlob (undici) and with curl on the same URLs in the same run (curl -K
 * config files; --parallel --parallel-max 32 for the concurrent case). Prints a Markdown table.
 *
 *   node --import tsx bench/registry.ts [--ranges 4000] [--concurrency 32] [--big-mib 1024]
 */
import { execFile } from 'node:child_process'
import { randomBytes, randomInt } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'
import { startRegistry } from '../harness/registry.js'
import { RegistryClient } from '../src/registry/client.js'
import { StaticCredentials } from '../src/registry/credentials.js'

const execFileP = promisify(execFile)

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}

const RANGES = arg('ranges', 4000)
const CONC = arg('concurrency', 32)
const BIG = arg('big-mib', 1024) * 1024 * 1024
const RANGE_LEN = 64 * 1024

interface Row { test: string; client: string; mbps: number; p50: number | undefined; p99: number | undefined }

function pct(sorted: number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

function row(test: string, client: string, bytes: number, wallMs: number, lat: number[]): Row {
  const s = [...lat].sort((a, b) => a - b)
  return { test, client, mbps: bytes / 1e6 / (wallMs / 1000), p50: pct(s, 50), p99: pct(s, 99) }
}

async function curlRun(dir: string, name: string, url: string, ranges: Array<[number, number]>, parallel: number): Promise<{ wallMs: number; lat: number[] }> {
  const cfg = ranges.map(([off, len]) => `url = "${url}"\nrange = "${off}-${off + len - 1}"\noutput = "/dev/null"\nwrite-out = "%{time_total} %{size_download}\\n"\n`).join('next\n')
  const file = join(dir, `${name}.curlrc`)
  await writeFile(file, cfg)
  const args = ['-s', '-S', '--fail', '-K', file]
  if (parallel > 1) args.unshift('--parallel', '--parallel-max', String(parallel))
  const t0 = performance.now()
  const { stdout } = await execFileP('curl', args, { maxBuffer: 64 << 20 })
  const wallMs = performance.now() - t0
  const lines = stdout.trim().split('\n')
  const lat = lines.map((l) => Number(l.split(' ')[0]) * 1000)
  const bytes = lines.reduce((a, l) => a + Number(l.split(' ')[1]), 0)
  const want = ranges.reduce((a, [, len]) => a + len, 0)
  if (bytes !== want) throw new Error(`curl downloaded ${bytes} bytes, expected ${want}`)
  return { wallMs, lat }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'stargz-bench-'))
  const reg = await startRegistry()
  const client = new RegistryClient({ plainHttp: true, hostsDir: join(work, 'certs.d'), credentials: new StaticCredentials({}) })
  try {
    // A little over 1 GiB so the 1 GiB read is a true range read (whole-blob reads are hashed).
    const data = randomBytes(BIG + 4096)
    const ref = `${reg.host}/bench/blob:v1`
    process.stderr.write(`pushing ${data.length} bytes...\n`)
    const { digest } = await client.pushBlob(ref, data)
    const url = `${reg.url}/v2/bench/blob/blobs/${digest}`
    const rows: Row[] = []
    const ranges: Array<[number, number]> = Array.from({ length: RANGES }, () => [randomInt(0, data.length - RANGE_LEN), RANGE_LEN])

    // Warm the page cache and connections for both clients.
    const warm = await client.blob(ref, digest, data.length)
    await warm.read(0, 1024)
    await curlRun(work, 'warm', url, [[0, 1024]], 1)

    // 1. one 1 GiB range GET
    {
      const blob = await client.blob(ref, digest, data.length)
      const t0 = performance.now()
      const buf = await blob.read(0, BIG)
      const ms = performance.now() - t0
      if (!buf.subarray(BIG - 16).equals(data.subarray(BIG - 16, BIG))) throw new Error('wrong bytes')
      rows.push(row(`1 x ${BIG >> 20} MiB range GET`, 'stargzd (undici)', BIG, ms, [ms]))
      const c = await curlRun(work, 'big', url, [[0, BIG]], 1)
      rows.push(row(`1 x ${BIG >> 20} MiB range GET`, 'curl', BIG, c.wallMs, c.lat))
    }
    // 2. sequential 64 KiB ranges
    {
      const blob = await client.blob(ref, digest, data.length)
      const lat: number[] = []
      const t0 = performance.now()
      for (const [off, len] of ranges) {
        const s = performance.now()
        const b = await blob.read(off, len)
        lat.push(performance.now() - s)
        if (b.length !== len) throw new Error('short read')
      }
      rows.push(row(`${RANGES} x 64 KiB random, sequential`, 'stargzd (undici)', RANGES * RANGE_LEN, performance.now() - t0, lat))
      const c = await curlRun(work, 'seq', url, ranges, 1)
      rows.push(row(`${RANGES} x 64 KiB random, sequential`, 'curl', RANGES * RANGE_LEN, c.wallMs, c.lat))
    }
    // 3. 32 concurrent 64 KiB ranges
    {
      const blob = await client.blob(ref, digest, data.length)
      const lat: number[] = []
      let next = 0
      const t0 = performance.now()
      await Promise.all(Array.from({ length: CONC }, async () => {
        while (next < ranges.length) {
          const [off, len] = ranges[next++] as [number, number]
          const s = performance.now()
          await blob.read(off, len)
          lat.push(performance.now() - s)
        }
      }))
      rows.push(row(`${RANGES} x 64 KiB random, ${CONC} concurrent`, 'stargzd (undici)', RANGES * RANGE_LEN, performance.now() - t0, lat))
      const c = await curlRun(work, 'par', url, ranges, CONC)
      rows.push(row(`${RANGES} x 64 KiB random, ${CONC} concurrent`, 'curl --parallel', RANGES * RANGE_LEN, c.wallMs, c.lat))
    }
    const f = (n: number | undefined, d = 2): string => (n === undefined ? '-' : n.toFixed(d))
    const lines = [
      '| test | client | MB/s | p50 ms | p99 ms |',
      '|---|---|---:|---:|---:|',
      ...rows.map((r) => `| ${r.test} | ${r.client} | ${f(r.mbps, 0)} | ${f(r.p50)} | ${f(r.p99)} |`),
    ]
    process.stdout.write(lines.join('\n') + '\n')
  } finally {
    await client.close()
    await reg.close()
    await rm(work, { recursive: true, force: true })
  }
}

await main()
