/**
 * `npm run bench:restart`: restart-to-ready after kill -9 with 1, 20 and 100 lazy layers mounted,
 * registry up and registry down (every request answered 503 by a proxy), for:
 *   - in-process (the default): FUSE in stargzd; the new daemon detaches the dead mounts and
 *     re-mounts each layer from its persisted record (src/layer/layer-store.ts), no registry;
 *   - fused: --fuse-manager default — stargz-fused keeps serving, the new daemon re-attaches;
 *   - reference: containerd-stargz-grpc (/var/tmp/stargz-reference, refd wrapper), which restores
 *     before it serves and re-resolves every layer from the registry.
 * "ready" is spawn → `ready` log line (socket open, systemd notified) for stargzd, spawn →
 * `refd serving` for the reference; "restored" is spawn → every layer back (stargzd's
 * `restored remote snapshots`, after ready now; the reference's ready). Real containerd +
 * docker-registry; one image of N one-file eStargz layers pulled with ctr-remote rpull.
 * stargzd's log also gives process uptime at ready / at restored (module loading included, spawn
 * overhead and the test harness's log reading excluded). BENCH_RUNS (default 3) runs per case;
 * prints every run as JSON and a table of medians (values are medians over the runs).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { startContainerd, unmountUnder } from '../harness/containerd.js'
import { startRegistry } from '../harness/registry.js'
import { startFaultProxy } from '../harness/fault-proxy.js'
import { buildImage, skopeoPush, writeOciLayout } from '../harness/image.js'
import { convertFile } from '../harness/convert.js'
import { stopFused } from '../harness/fused.js'
import { REPO, startStargzd, type StargzdProcess } from '../harness/stargzd.js'
import { daemonCommand } from '../src/bench/stargzd.js'
import { TOC_DIGEST_ANNOTATION } from '../src/estargz/types.js'
import { DEFAULT_REFERENCE_BIN, referenceConfig } from '../src/bench/reference.js'

const COUNTS = (process.env.BENCH_LAYERS ?? '1,20,100').split(',').map(Number)
const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const MODES = (process.env.BENCH_MODES ?? 'in-process,fused,reference').split(',') as Mode[]
/**
 * The path users run: the built tree (`npm run build`, node dist/daemon/stargzd.js), as installed
 * by scripts/install-system.sh. BENCH_TSX=1 runs the sources through tsx instead (slower start).
 */
const DIST = process.env.BENCH_TSX !== '1'
const DAEMON = DIST ? [process.execPath, join(REPO, 'dist', 'daemon', 'stargzd.js')] : daemonCommand()
type Mode = 'in-process' | 'fused' | 'reference'

interface Row { layers: number; mode: Mode; registry: 'up' | 'down'; run: number; readyMs: number; uptimeReadyMs: number; restoredMs: number; uptimeRestoredMs: number; restored: number; failed: number; error?: string }

/** A daemon on a fixed root that can be killed -9 and started again. */
interface Restartable {
  /** Start and wait for ready; `restored` resolves once every layer is back (or failed). */
  start(): Promise<{ readyMs: number; uptimeReadyMs: number; restored: Promise<{ ms: number; uptimeMs: number; restored: number; failed: number }> }>
  kill9(): Promise<void>
  close(): Promise<void>
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? (s[m] as number) : Math.round(((s[m - 1] as number) + (s[m] as number)) / 2)
}

async function main(): Promise<void> {
  if (DIST && MODES.some((m) => m !== 'reference')) execFileSync('npm', ['run', 'build'], { cwd: REPO, stdio: 'inherit' })
  const rows: Row[] = []
  const registry = await startRegistry()
  const proxy = await startFaultProxy(registry.url)
  const work = await mkdtemp(join(tmpdir(), 'bench-rst-'))
  try {
    for (const n of COUNTS) {
      const layers = []
      for (let i = 0; i < n; i++) {
        const d = join(work, `l${n}-${i}`)
        await mkdir(join(d, 'root'), { recursive: true })
        await writeFile(join(d, 'root', `file-${i}`), `layer ${i} of ${n}\n`.repeat(200))
        execFileSync('tar', ['-cf', join(d, 'l.tar'), '-C', join(d, 'root'), '.'])
        const conv = await convertFile(join(d, 'l.tar'), join(d, 'l.esgz'))
        layers.push({ data: await readFile(join(d, 'l.esgz')), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } })
      }
      await writeOciLayout(join(work, `oci${n}`), 'v1', [buildImage({ layers })])
      await skopeoPush(join(work, `oci${n}`), 'v1', `${registry.host}/bench/l${n}:v1`)
      for (const mode of MODES) {
        // One case failing (say the reference binary missing) must not lose the others' figures.
        try {
          rows.push(...await runCase(work, proxy, n, mode))
        } catch (e) {
          process.stderr.write(`case ${n} layers / ${mode} failed: ${(e as Error).message.slice(0, 2000)}\n`)
        }
      }
    }
  } finally {
    proxy.faults.statusBurst = undefined
    await proxy.close()
    await registry.close()
    await rm(work, { recursive: true, force: true })
  }
  for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`)
  process.stdout.write(`\n| layers | mode | registry | ready: spawn → serving ms | ready: in-process uptime ms | all layers back: spawn → ms | all back: uptime ms | restored / failed (last run) | runs |\n|---|---|---|---|---|---|---|---|---|\n`)
  const keys = [...new Set(rows.map((r) => `${r.layers}|${r.mode}|${r.registry}`))]
  for (const k of keys) {
    const rs = rows.filter((r) => `${r.layers}|${r.mode}|${r.registry}` === k)
    const last = rs.at(-1) as Row
    if (rs.every((r) => r.error !== undefined)) {
      process.stdout.write(`| ${last.layers} | ${last.mode} | ${last.registry} | never ready | – | – | – | ${JSON.stringify(last.error).slice(0, 120)} | ${rs.length} |\n`)
      continue
    }
    process.stdout.write(`| ${last.layers} | ${last.mode} | ${last.registry} | ${median(rs.map((r) => r.readyMs))} | ${median(rs.map((r) => r.uptimeReadyMs))} | ${median(rs.map((r) => r.restoredMs))} | ${median(rs.map((r) => r.uptimeRestoredMs))} | ${last.restored} / ${last.failed} | ${rs.length} |\n`)
  }
}

function stargzdDaemon(dir: string, mode: 'in-process' | 'fused'): Restartable {
  const root = join(dir, 'root')
  const args = ['--root', root, '--address', join(dir, 's.sock'), '--config', join(dir, 'config.toml'), '--hosts-dir', join(dir, 'certs.d'), ...(mode === 'fused' ? ['--fuse-manager', 'default'] : [])]
  const procs: StargzdProcess[] = []
  return {
    async start() {
      await writeFile(join(dir, 'config.toml'), 'no_background_fetch = true\nnoprefetch = true\n[blob]\nmax_retries = 1\nmin_wait_msec = 10\nmax_wait_msec = 50\n')
      const t0 = performance.now()
      const p = await startStargzd(['--log-level', 'info', ...args], {}, DAEMON)
      procs.push(p)
      const ready = await p.waitFor((l) => l.msg === 'ready', 300_000)
      const readyMs = Math.round(performance.now() - t0)
      const restored = p.waitFor((l) => l.msg === 'restored remote snapshots', 300_000).then((rep) => ({ ms: Math.round(performance.now() - t0), uptimeMs: Number(rep.uptimeMs), restored: Number(rep.restored), failed: Number(rep.failed) }))
      return { readyMs, uptimeReadyMs: Number(ready.uptimeMs), restored }
    },
    async kill9() { await procs.at(-1)?.kill9() },
    async close() {
      for (const q of procs) await q.close()
      await stopFused(root)
    },
  }
}

function referenceDaemon(dir: string, registryHost: string): Restartable {
  const root = join(dir, 'root')
  const sock = join(dir, 's.sock')
  let child: ChildProcess | undefined
  let starts = 0
  return {
    async start() {
      await writeFile(join(dir, 'ref.toml'), referenceConfig({ registryHost, noBackgroundFetch: true }))
      const log = join(dir, `ref-${starts++}.log`)
      const fd = openSync(log, 'a')
      const t0 = performance.now()
      try {
        child = spawn(DEFAULT_REFERENCE_BIN, ['-address', sock, '-root', root, '-config', join(dir, 'ref.toml'), '-log-level', 'info'], { stdio: ['ignore', fd, fd] })
      } finally {
        closeSync(fd)
      }
      const c = child
      for (;;) {
        if (c.exitCode !== null || c.signalCode !== null) throw new Error(`reference exited during start-up:\n${await readFile(log, 'utf8')}`)
        if ((await readFile(log, 'utf8')).includes('refd serving')) break
        if (performance.now() - t0 > 300_000) throw new Error('reference not ready in 300 s')
        await sleep(20)
      }
      const readyMs = Math.round(performance.now() - t0)
      // It restores before it serves: ready is every layer back or given up on (it does not say which).
      return { readyMs, uptimeReadyMs: Number.NaN, restored: Promise.resolve({ ms: readyMs, uptimeMs: Number.NaN, restored: Number.NaN, failed: Number.NaN }) }
    },
    async kill9() {
      const c = child
      if (c && c.exitCode === null && c.signalCode === null) {
        const gone = new Promise((r) => c.once('exit', r))
        c.kill('SIGKILL')
        await gone
      }
      // Its dead FUSE mounts: the reference does not detach them itself.
      await unmountUnder(root)
    },
    async close() {
      const c = child
      if (c && c.exitCode === null && c.signalCode === null) {
        const gone = new Promise((r) => c.once('exit', r))
        c.kill('SIGINT')
        await Promise.race([gone, sleep(20_000)])
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
      }
    },
  }
}

async function runCase(work: string, proxy: Awaited<ReturnType<typeof startFaultProxy>>, n: number, mode: Mode): Promise<Row[]> {
  const dir = await mkdtemp(join(work, `case-${mode}-`))
  const d = mode === 'reference' ? referenceDaemon(dir, proxy.host) : stargzdDaemon(dir, mode)
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: join(dir, 's.sock') } } })
  const rows: Row[] = []
  try {
    await d.start()
    // containerd's first dial of a fresh proxy socket can time out on a loaded machine: retry.
    let rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', `${proxy.host}/bench/l${n}:v1`])
    for (let i = 0; i < 5 && rp.code !== 0; i++) {
      await sleep(2000)
      rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', `${proxy.host}/bench/l${n}:v1`])
    }
    if (rp.code !== 0) throw new Error(`rpull: ${rp.stderr}`)
    for (const reg of ['up', 'down'] as const) {
      for (let run = 1; run <= RUNS; run++) {
        proxy.faults.statusBurst = reg === 'down' ? { status: 503, count: 1_000_000 } : undefined
        await d.kill9()
        try {
          const s = await d.start()
          const back = await s.restored
          rows.push({ layers: n, mode, registry: reg, run, readyMs: s.readyMs, uptimeReadyMs: s.uptimeReadyMs, restoredMs: back.ms, uptimeRestoredMs: back.uptimeMs, restored: back.restored, failed: back.failed })
        } catch (e) {
          // The reference exits (fatal "failed to create new snapshotter") when a layer cannot be
          // restored: a start that never got ready is a result too.
          const last = (e as Error).message.split('\n').filter((l) => l.includes('fatal')).at(-1) ?? (e as Error).message.slice(0, 300)
          rows.push({ layers: n, mode, registry: reg, run, readyMs: Number.NaN, uptimeReadyMs: Number.NaN, restoredMs: Number.NaN, uptimeRestoredMs: Number.NaN, restored: Number.NaN, failed: Number.NaN, error: last.slice(0, 300) })
        }
        process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`)
        proxy.faults.statusBurst = undefined
      }
    }
  } finally {
    proxy.faults.statusBurst = undefined
    await d.close()
    await ctrd.close()
    await unmountUnder(dir)
    await rm(dir, { recursive: true, force: true })
  }
  return rows
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})
