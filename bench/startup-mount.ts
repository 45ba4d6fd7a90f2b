/**
 * npm run bench:startup-mount [-- --runs 3 --image python3 --rate-mbit 200 --rtt-ms 20]
 *
 * What `stargz mount` fetches from mount to the workload's first output line, beside what the
 * daemon fetched for the same image in `stargz bench` (issue #13: 23.6 MB vs 5.3 MB for python3
 * hello). The unoptimized eStargz form of the bench image is pushed to a local registry behind
 * the emulated link; each run starts the compiled CLI (`stargz mount REF MP`, default settings),
 * waits for the overlay mount, runs the workload with `chroot MP …` and counts the bytes the link
 * delivered (mount + workload), then stops the mount with SIGINT. Needs root.
 */
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { buildBenchImage, type BenchImageName } from '../src/bench/image/images.js'
import { pushOciLayout } from '../src/bench/image/oci-image.js'
import { estargzLayout } from '../src/bench/estargz-image.js'
import { createWanLink, installSignalCleanup } from '../src/bench/link/wan-link.js'
import { childEnv, dropPageCache, stopChild, timed } from '../src/bench/proc.js'
import { startBenchRegistry } from '../src/bench/registry.js'
import { builtDaemonCommand } from '../src/bench/stargzd.js'

const { values } = parseArgs({ options: { runs: { type: 'string' }, image: { type: 'string' }, 'rate-mbit': { type: 'string' }, 'rtt-ms': { type: 'string' } } })
const runs = Number(values.runs ?? 3)
const image = (values.image ?? 'python3') as BenchImageName
const fixtureDir = process.env.STARGZD_FIXTURE_DIR ?? '/var/tmp/stargzd-fixtures'
installSignalCleanup()

const log = (m: string): void => { process.stderr.write(`${m}\n`) }
const gz = await buildBenchImage(image, { fixtureDir, log })
const workload = gz.workloads.hello
if (!workload) throw new Error(`${image} has no hello workload`)
const noopt = await estargzLayout(gz.layout, { fixtureDir, tag: `${image}-esgz-noopt`, log })
// The compiled CLI, as users run it (dist/src/cli/main.js next to dist/daemon/stargzd.js).
const daemon = await builtDaemonCommand()
const cli = [daemon[0] as string, (daemon[1] as string).replace(/daemon\/stargzd\.js$/, 'src/cli/main.js')]

const registry = await startBenchRegistry({ accessLog: true })
const link = await createWanLink({ upstream: { host: registry.host, port: registry.port }, rateMbit: Number(values['rate-mbit'] ?? 200), rttMs: Number(values['rtt-ms'] ?? 20) })
const rows: Array<{ run: number; mountS: number; workloadS: number; mb: number; requests: number }> = []
try {
  await pushOciLayout(noopt, `${registry.address}/bench/${image}:noopt`)
  const ref = `${link.address}/bench/${image}:noopt`
  for (let run = 1; run <= runs; run++) {
    await dropPageCache()
    const dir = await mkdtemp(join(tmpdir(), 'sgzb-mount-'))
    const mp = join(dir, 'mp')
    await mkdir(mp)
    const before = await link.stats()
    const logStart = (await readFile(registry.logPath, 'utf8')).length
    const t0 = performance.now()
    const child = spawn(cli[0] as string, [cli[1] as string, 'mount', '--plain-http', ref, mp, '--state-dir', join(dir, 'state')], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() })
    let out = ''
    child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
    child.stderr?.on('data', (b: Buffer) => { out += b.toString() })
    try {
      // Mounted once the overlay is in the mount table.
      for (;;) {
        const mounts = await readFile('/proc/self/mounts', 'utf8')
        if (mounts.split('\n').some((l) => l.split(' ')[1] === mp && l.split(' ')[2] === 'overlay')) break
        if (child.exitCode !== null) throw new Error(`stargz mount exited (${child.exitCode}):\n${out.slice(-3000)}`)
        if (performance.now() - t0 > 120_000) throw new Error(`not mounted after 120 s:\n${out.slice(-3000)}`)
        await new Promise((r) => setTimeout(r, 10))
      }
      const mountS = (performance.now() - t0) / 1000
      const w = await timed('chroot', [mp, ...workload.args], { timeoutMs: 120_000 })
      if (!w.result.stdout.includes(workload.expect)) throw new Error(`workload printed ${JSON.stringify(w.result.stdout)}`)
      const after = await link.stats()
      const accessLog = (await readFile(registry.logPath, 'utf8')).slice(logStart)
      const requests = accessLog.split('\n').filter((l) => /"(GET|HEAD) \S+\/blobs\//.test(l)).length
      rows.push({ run, mountS, workloadS: w.ms / 1000, mb: (after.bytesDown - before.bytesDown) / 1e6, requests })
      log(`run ${run}: mounted in ${mountS.toFixed(2)} s, hello in ${(w.ms / 1000).toFixed(2)} s, ${((after.bytesDown - before.bytesDown) / 1e6).toFixed(1)} MB, ${requests} blob requests`)
    } finally {
      await stopChild(child, 30_000)
      await rm(dir, { recursive: true, force: true }).catch(() => undefined)
    }
  }
} finally {
  await link.close().catch(() => undefined)
  await registry.close().catch(() => undefined)
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] as number }
process.stdout.write(`### stargz mount: mount → "${workload.expect}" printed, ${image} (eStargz, unoptimized), ${values['rate-mbit'] ?? 200} Mbit/s, ${values['rtt-ms'] ?? 20} ms RTT, median of ${rows.length}\n\n`)
process.stdout.write('| mount (s) | workload (s) | MB through the link | blob requests |\n|---:|---:|---:|---:|\n')
process.stdout.write(`| ${median(rows.map((r) => r.mountS)).toFixed(2)} | ${median(rows.map((r) => r.workloadS)).toFixed(2)} | ${median(rows.map((r) => r.mb)).toFixed(1)} | ${median(rows.map((r) => r.requests))} |\n`)
