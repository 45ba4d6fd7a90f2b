/**
 * `npm run bench:restart`: stargzd restart-to-ready (kill -9, start, `ready` log line) with 1, 20
 * and 100 lazy layers mounted, registry up and registry down (every request answered 503 by a
 * proxy), in two modes:
 *   - fused: --fuse-manager default — stargz-fused keeps serving, the new daemon re-attaches;
 *   - in-process: FUSE in stargzd — every layer is opened from the registry again (footer + TOC).
 * Real containerd + docker-registry; one image of N one-file eStargz layers pulled with
 * ctr-remote rpull. Prints one JSON line per case and a table. Single runs (2 shared cores).
 */
import { execFileSync } from 'node:child_process'
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
import { startStargzd, type StargzdProcess } from '../harness/stargzd.js'
import { TOC_DIGEST_ANNOTATION } from '../src/estargz/types.js'

const COUNTS = (process.env.BENCH_LAYERS ?? '1,20,100').split(',').map(Number)

interface Row { layers: number; mode: string; registry: 'up' | 'down'; readyMs: number; restoreMs: number; restored: number; failed: number }

async function main(): Promise<void> {
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
      for (const mode of ['fused', 'in-process'] as const) rows.push(...await runCase(work, proxy, n, mode))
    }
  } finally {
    await proxy.close()
    await registry.close()
    await rm(work, { recursive: true, force: true })
  }
  for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`)
  process.stdout.write('\n| layers | mode | registry | restart-to-ready ms (spawn → ready) | restore ms (in daemon) | restored | failed |\n|---|---|---|---|---|---|---|\n')
  for (const r of rows) process.stdout.write(`| ${r.layers} | ${r.mode} | ${r.registry} | ${r.readyMs} | ${r.restoreMs} | ${r.restored} | ${r.failed} |\n`)
}

async function runCase(work: string, proxy: Awaited<ReturnType<typeof startFaultProxy>>, n: number, mode: 'fused' | 'in-process'): Promise<Row[]> {
  const dir = await mkdtemp(join(work, `case-${mode}-`))
  const root = join(dir, 'root')
  const sock = join(dir, 's.sock')
  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'no_background_fetch = true\nnoprefetch = true\n[blob]\nmax_retries = 1\nmin_wait_msec = 10\nmax_wait_msec = 50\n')
  const args = ['--root', root, '--address', sock, '--config', cfg, '--hosts-dir', join(dir, 'certs.d'), ...(mode === 'fused' ? ['--fuse-manager', 'default'] : [])]
  const procs: StargzdProcess[] = []
  const start = async (): Promise<{ p: StargzdProcess; ms: number }> => {
    const t0 = performance.now()
    const p = await startStargzd(['--log-level', 'info', ...args])
    procs.push(p)
    await p.waitFor((l) => l.msg === 'ready', 300_000)
    return { p, ms: Math.round(performance.now() - t0) }
  }
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  const rows: Row[] = []
  try {
    let { p } = await start()
    // containerd's first dial of a fresh proxy socket can time out on a loaded machine: retry.
    let rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', `${proxy.host}/bench/l${n}:v1`])
    for (let i = 0; i < 5 && rp.code !== 0; i++) {
      await sleep(2000)
      rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', `${proxy.host}/bench/l${n}:v1`])
    }
    if (rp.code !== 0) throw new Error(`rpull: ${rp.stderr}`)
    for (const reg of ['up', 'down'] as const) {
      proxy.faults.statusBurst = reg === 'down' ? { status: 503, count: 1_000_000 } : undefined
      await p.kill9()
      if (mode === 'in-process') await unmountUnder(root) // the dead server's mounts (restore would detach them too)
      const s = await start()
      p = s.p
      const rep = p.logs.find((l) => l.msg === 'restored remote snapshots')
      rows.push({ layers: n, mode, registry: reg, readyMs: s.ms, restoreMs: Number(rep?.ms), restored: Number(rep?.restored), failed: Number(rep?.failed) })
      process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`)
    }
    proxy.faults.statusBurst = undefined
  } finally {
    for (const q of procs) await q.close()
    await ctrd.close()
    await stopFused(root)
    await unmountUnder(dir)
    await rm(dir, { recursive: true, force: true })
  }
  return rows
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`)
  process.exit(1)
})
