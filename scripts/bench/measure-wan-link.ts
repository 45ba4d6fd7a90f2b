/**
 * Measure what the emulated WAN link (src/bench/link/wan-link.ts) really gives, with a real
 * docker-registry behind it and curl in front:
 *   - throughput: GET of a 50 MB blob (5 runs);
 *   - latency: a small GET (/v2/) on a new connection and on a kept-alive one (10 runs each).
 *
 *   node --import tsx scripts/bench/measure-wan-link.ts [--rate 200] [--rtt 20] [--json]
 */
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { createWanLink, installSignalCleanup } from '../../src/bench/link/wan-link.js'
import { startRegistry } from '../../harness/registry.js'

const execFileP = promisify(execFile)

interface CurlTimes { code: number; size: number; connect: number; ttfb: number; total: number }

async function curl(urls: string[]): Promise<CurlTimes[]> {
  const fmt = '%{http_code} %{size_download} %{time_connect} %{time_starttransfer} %{time_total}\\n'
  const args = ['-s', '-w', fmt]
  for (const u of urls) args.push('-o', '/dev/null', u)
  const { stdout } = await execFileP('curl', args, { encoding: 'utf8' })
  return stdout.trim().split('\n').map((l) => {
    const [code, size, connect, ttfb, total] = l.split(' ').map(Number) as [number, number, number, number, number]
    return { code, size, connect, ttfb, total }
  })
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

async function pushBlob(base: string, data: Buffer): Promise<string> {
  const digest = 'sha256:' + createHash('sha256').update(data).digest('hex')
  const start = await fetch(`${base}/v2/bench/wan/blobs/uploads/`, { method: 'POST' })
  if (start.status !== 202) throw new Error(`upload start: HTTP ${start.status}`)
  const loc = new URL(start.headers.get('location') ?? '', base)
  loc.searchParams.set('digest', digest)
  const put = await fetch(loc, { method: 'PUT', body: new Uint8Array(data), headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`upload: HTTP ${put.status}`)
  return digest
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  const opt = (name: string, def: number): number => {
    const i = argv.indexOf(name)
    return i >= 0 ? Number(argv[i + 1]) : def
  }
  const rateMbit = opt('--rate', 200)
  const rttMs = opt('--rtt', 20)
  installSignalCleanup()
  const reg = await startRegistry()
  try {
    const blob = randomBytes(50 * 1000 * 1000)
    const digest = await pushBlob(reg.url, blob)
    const [host, port] = reg.host.split(':') as [string, string]
    const link = await createWanLink({ rateMbit, rttMs, upstream: { host, port: Number(port) } })
    try {
      const results: Record<string, unknown> = { rateMbit, rttMs }
      for (const [label, base] of [['direct', reg.url], ['link', `http://${link.address}`]] as const) {
        const blobUrl = `${base}/v2/bench/wan/blobs/${digest}`
        const big: CurlTimes[] = []
        for (let i = 0; i < 5; i++) big.push(...(await curl([blobUrl])))
        if (big.some((b) => b.code !== 200 || b.size !== blob.length)) throw new Error(`${label}: blob GET failed: ${JSON.stringify(big)}`)
        const fresh: CurlTimes[] = []
        const reused: CurlTimes[] = []
        for (let i = 0; i < 10; i++) {
          const [a, b] = await curl([`${base}/v2/`, `${base}/v2/`]) as [CurlTimes, CurlTimes]
          fresh.push(a)
          reused.push(b)
        }
        results[label] = {
          blobMBps: median(big.map((b) => b.size / b.total / 1e6)),
          blobMbit: median(big.map((b) => (b.size * 8) / b.total / 1e6)),
          blobSeconds: median(big.map((b) => b.total)),
          smallNewConnMs: median(fresh.map((b) => b.total * 1000)),
          smallReusedConnMs: median(reused.map((b) => b.total * 1000)),
        }
      }
      results.linkStats = await link.stats()
      if (argv.includes('--json')) {
        process.stdout.write(JSON.stringify(results, null, 2) + '\n')
      } else {
        for (const label of ['direct', 'link']) {
          const r = results[label] as Record<string, number>
          process.stdout.write(`${label.padEnd(7)} 50 MB blob: ${r.blobMBps!.toFixed(1)} MB/s (${r.blobMbit!.toFixed(1)} Mbit/s payload, ${r.blobSeconds!.toFixed(2)} s); ` +
            `small GET: ${r.smallNewConnMs!.toFixed(1)} ms new connection, ${r.smallReusedConnMs!.toFixed(1)} ms kept-alive\n`)
        }
        process.stdout.write(`link: ${rateMbit} Mbit/s, ${rttMs} ms RTT; ${JSON.stringify(results.linkStats)}\n`)
      }
    } finally {
      await link.close()
    }
  } finally {
    await reg.close()
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`measure-wan-link: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`)
  process.exit(1)
})
