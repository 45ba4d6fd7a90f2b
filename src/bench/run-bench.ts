/**
 * `stargz bench`: HelloBench-style start-up benchmark on this machine.
 *
 *  1. Images (cached under the fixture dir): each bench image as built by src/bench/image/images.ts
 *     (gzip, for `legacy`), converted to eStargz without priorities (`estargz-noopt`), and
 *     converted with the files its workload opened first (`estargz`; recorded by running the
 *     workload once on a lazy mount of the unoptimized image).
 *  2. A docker-registry on 127.0.0.1 (temp dir); every form pushed to it directly.
 *  3. The WAN link (tbf + delay, src/bench/link/wan-link.ts) in front of it: containerd and stargzd
 *     only ever see the link's address.
 *  4. For each run, image and mode (interleaved, so drift spreads over all modes): a cold
 *     measurement (measure.ts): fresh containerd, fresh stargzd, dropped page cache.
 *  5. Medians → Markdown table, results.json, results.md, chart.svg.
 */
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, release } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { buildBenchImage, type BenchImageName } from './image/images.js'
import { layoutSizes, pushOciLayout, type BuiltLayout } from './image/oci-image.js'
import { createWanLink, type WanLink } from './link/wan-link.js'
import { estargzLayout } from './estargz-image.js'
import { ctrRemoteConvert } from './ctr-remote-image.js'
import { benchIndexImage } from '../gzindex/bench-index.js'
import { measureOnce, type BenchDaemon, type BenchMode } from './measure.js'
import { CancelledError, onCleanup, throwIfCancelled } from './proc.js'
import { recordAccessedFiles } from './record.js'
import { startBenchRegistry, type BenchRegistry } from './registry.js'
import { builtDaemonCommand } from './stargzd.js'
import { chartSvg, markdownTable, summarize, type BenchResults, type CellResult, type ImageInfo } from './report.js'

const execFileP = promisify(execFile)

export interface BenchOptions {
  images: BenchImageName[]
  modes: BenchMode[]
  /** Snapshotters for the lazy modes, interleaved in this order within each run; default ['ours']. */
  daemons?: BenchDaemon[]
  /** Source tree for the 'baseline' daemon (stargzd before a change). */
  baselineDir?: string
  /** Keep the registry/gRPC timeline of the first run of each lazy cell (timeline-*.txt in outDir). */
  timeline?: boolean
  runs: number
  rateMbit: number
  rttMs: number
  /** Where results.json, results.md and chart.svg go; undefined: nowhere. */
  outDir?: string
  /** Workload name in src/bench/image/images.ts; default "hello". */
  workload?: string
  fixtureDir: string
  dropCaches: boolean
  backgroundFetch: boolean
  /** Parent of the per-run temp dirs (containerd, stargzd); keep short (socket paths). */
  baseDir?: string
  /** Per-step timeout (pull, create, run). */
  stepTimeoutMs?: number
  log: (msg: string) => void
}

interface PreparedImage {
  name: BenchImageName
  info: ImageInfo
  workload: { args: string[]; expect: string }
  layouts: Partial<Record<BenchMode, BuiltLayout>>
  /** The gzip original, the source of the ctr-remote forms. */
  gzip: BuiltLayout
}

async function version(cmd: string, args: string[]): Promise<string> {
  try { return (await execFileP(cmd, args, { encoding: 'utf8' })).stdout.trim().split('\n')[0] ?? '' } catch { return '' }
}

async function prepareImage(name: BenchImageName, o: BenchOptions): Promise<PreparedImage> {
  const log = (m: string): void => o.log(`  ${m}`)
  const gz = await buildBenchImage(name, { fixtureDir: o.fixtureDir, log })
  const wname = o.workload ?? 'hello'
  const workload = gz.workloads[wname] ?? gz.workloads.hello
  if (!workload) throw new Error(`image ${name} has no workload ${JSON.stringify(wname)} (has ${Object.keys(gz.workloads).join(', ')})`)
  const info: ImageInfo = { name, workload: workload.args, uncompressedBytes: gz.sizes.uncompressed, forms: {} }
  const layouts: PreparedImage['layouts'] = {}
  const form = (mode: BenchMode, l: BuiltLayout, prioritizedFiles?: number): void => {
    layouts[mode] = l
    info.forms[mode] = { manifest: l.manifest.digest, compressedBytes: layoutSizes(l).compressed, layers: l.layers.length, ...(prioritizedFiles !== undefined ? { prioritizedFiles } : {}) }
  }
  if (o.modes.includes('legacy') || o.modes.some((m) => m.startsWith('ctr-remote'))) form('legacy', gz.layout)
  if (o.modes.includes('gzindex')) form('gzindex', gz.layout)
  if (o.modes.includes('estargz-noopt') || o.modes.includes('estargz')) {
    const noopt = await estargzLayout(gz.layout, { fixtureDir: o.fixtureDir, tag: `${name}-esgz-noopt`, log })
    if (o.modes.includes('estargz-noopt')) form('estargz-noopt', noopt)
    if (o.modes.includes('estargz')) {
      const rec = await recordAccessedFiles(noopt, { args: workload.args, expect: workload.expect, fixtureDir: o.fixtureDir, log })
      const opt = await estargzLayout(gz.layout, { fixtureDir: o.fixtureDir, tag: `${name}-esgz-opt`, prioritizedFiles: rec.perLayer, log })
      form('estargz', opt, rec.files)
    }
  }
  return { name, info, workload: { args: workload.args, expect: workload.expect }, layouts, gzip: gz.layout }
}

export async function runBench(o: BenchOptions): Promise<{ results: BenchResults; markdown: string; failed: boolean }> {
  const startedAt = new Date().toISOString()
  o.log(`preparing images: ${o.images.join(', ')} (${o.modes.join(', ')})`)
  const prepared: PreparedImage[] = []
  for (const name of o.images) {
    throwIfCancelled()
    prepared.push(await prepareImage(name, o))
  }
  throwIfCancelled()
  if (o.modes.some((m) => m !== 'legacy') && (o.daemons ?? ['ours']).includes('ours')) {
    const t0 = performance.now()
    await builtDaemonCommand()
    o.log(`stargzd built (dist/) in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  }

  let registry: BenchRegistry | undefined
  let link: WanLink | undefined
  const closeAll = async (): Promise<void> => {
    await link?.close().catch(() => undefined)
    await registry?.close().catch(() => undefined)
  }
  const unregister = onCleanup(closeAll)
  const cells: CellResult[] = []
  try {
    registry = await startBenchRegistry({ accessLog: true, ...(o.baseDir ? { baseDir: o.baseDir } : {}) })
    o.log(`registry on ${registry.address}; pushing`)
    for (const p of prepared) {
      for (const [mode, layout] of Object.entries(p.layouts) as Array<[BenchMode, BuiltLayout]>) {
        const t0 = performance.now()
        await pushOciLayout(layout, `${registry.address}/bench/${p.name}:${mode}`)
        o.log(`  pushed ${p.name}:${mode} (${(layoutSizes(layout).compressed / 1e6).toFixed(1)} MB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
        if (mode === 'gzindex') await benchIndexImage(`${registry.address}/bench/${p.name}:${mode}`, o.log)
      }
    }
    for (const p of prepared) {
      const lazyT = o.modes.includes('ctr-remote-noopt') ? `bench/${p.name}:ctr-remote-noopt` : undefined
      const optT = o.modes.includes('ctr-remote') ? `bench/${p.name}:ctr-remote` : undefined
      if (!lazyT && !optT) continue
      throwIfCancelled()
      await ctrRemoteConvert({
        registry: registry.address, source: `bench/${p.name}:legacy`, workload: p.workload.args,
        ...(lazyT ? { lazyTarget: lazyT } : {}), ...(optT ? { optimizedTarget: optT } : {}),
        ...(o.baseDir ? { baseDir: o.baseDir } : {}), log: (m) => o.log(`  ${p.name}: ${m}`),
        cacheDir: join(o.fixtureDir, 'ctr-remote'), sourceDigest: p.gzip.manifest.digest,
      })
    }
    throwIfCancelled()
    link = await createWanLink({ rateMbit: o.rateMbit, rttMs: o.rttMs, upstream: { host: registry.host, port: registry.port } })
    o.log(`WAN link ${link.address} → ${registry.address}: ${o.rateMbit} Mbit/s, ${o.rttMs} ms RTT (netns ${link.resources.netns})`)

    const daemons: BenchDaemon[] = o.daemons ?? ['ours']
    const plan: Array<{ mode: BenchMode; daemon?: BenchDaemon }> = o.modes.flatMap((mode): Array<{ mode: BenchMode; daemon?: BenchDaemon }> => mode === 'legacy' ? [{ mode }] : daemons.map((daemon) => ({ mode, daemon })))
    const cellOf = (image: string, mode: BenchMode, daemon?: BenchDaemon): CellResult =>
      cells.find((c) => c.image === image && c.mode === mode && c.daemon === daemon) as CellResult
    for (const p of prepared) for (const { mode, daemon } of plan) cells.push({ image: p.name, mode, ...(daemon ? { daemon } : {}), samples: [], errors: [] })
    for (let run = 1; run <= o.runs; run++) {
      for (const p of prepared) {
        for (const { mode, daemon } of plan) {
          const cell = cellOf(p.name, mode, daemon)
          const ref = `${link.address}/bench/${p.name}:${mode}`
          const label = `${p.name} ${mode}${daemon ? ` ${daemon}` : ''}`
          throwIfCancelled()
          o.log(`run ${run}/${o.runs} ${label}`)
          const timeline = o.timeline === true && run === 1 && daemon !== undefined
          try {
            const s = await measureOnce({
              mode, ref, workload: p.workload, link, dropCaches: o.dropCaches,
              ...(daemon ? { daemon } : {}),
              ...(o.baselineDir ? { baselineDir: o.baselineDir } : {}),
              registryLog: registry.logPath,
              timeline,
              backgroundFetch: o.backgroundFetch,
              ...(o.baseDir ? { baseDir: o.baseDir } : {}),
              ...(o.stepTimeoutMs ? { stepTimeoutMs: o.stepTimeoutMs } : {}),
              ...(o.backgroundFetch ? {} : { stargzdConfig: ['no_background_fetch = true'] }),
              log: o.log,
            })
            if (s.timeline !== undefined) {
              if (o.outDir) {
                await mkdir(o.outDir, { recursive: true })
                const f = join(o.outDir, `timeline-${p.name}-${mode}-${daemon ?? 'overlayfs'}.txt`)
                await writeFile(f, s.timeline)
                o.log(`  timeline: ${f}`)
              }
              delete s.timeline
            }
            cell.samples.push(s)
            o.log(`  pull ${s.pull.toFixed(2)} s, create ${s.create.toFixed(2)} s, run ${s.run.toFixed(2)} s = ${s.total.toFixed(2)} s; ` +
              `${(s.bytesFetched / 1e6).toFixed(1)} MB via link, ${s.blobRequests ?? '?'} blob requests, ${s.connections} connections` +
              `${s.stargzdFetchedBytes !== undefined ? `, stargzd fetched ${(s.stargzdFetchedBytes / 1e6).toFixed(1)} MB` : ''}`)
          } catch (e) {
            if (e instanceof CancelledError) throw e
            const msg = (e as Error).message
            cell.errors.push(msg)
            o.log(`  FAILED: ${msg}`)
          }
        }
      }
    }
  } finally {
    await closeAll()
    unregister()
  }

  summarize(cells)
  const results: BenchResults = {
    version: 1,
    startedAt,
    finishedAt: new Date().toISOString(),
    host: { cpus: cpus().length, kernel: release(), node: process.version, containerd: await version('containerd', ['--version']) },
    link: { rateMbit: o.rateMbit, rttMs: o.rttMs },
    runs: o.runs,
    dropCaches: o.dropCaches,
    backgroundFetch: o.backgroundFetch,
    notes: [
      'pull: `ctr images pull` (legacy: fetch + unpack into overlayfs) or `ctr-remote images rpull` (estargz modes: layers mounted lazily by stargzd); ' +
        'create: `ctr containers create`; run: `ctr tasks start` until the workload\'s **first output line** (not its exit).',
      'total is the median of per-run totals (so it need not equal the sum of the phase medians).',
      `MB fetched: registry → client bytes through the emulated link during pull + create + run.${o.backgroundFetch ? ' stargzd\'s background fetch is on (as in production), so the estargz modes include whatever it fetched by then.' : ' Background fetch was off.'}`,
      `Each run is cold: fresh containerd and stargzd (empty roots and caches)${o.dropCaches ? ', page cache dropped' : ''}; runs interleave images and modes.`,
      'ours / reference: the lazy modes run once with stargzd and once with the reference daemon (stargz-snapshotter 0.12 containerd-stargz-grpc, its own config: the link as a plain-HTTP mirror), interleaved reference, ours, … in every run; "ours/ref" is our median total over its median total (phases: pull, create, run).',
      'ctr-remote-noopt / ctr-remote: the gzip image converted by the reference\'s `ctr-remote image convert --oci --estargz` / `ctr-remote image optimize --oci` (workload as entrypoint+args, --period 5).',
      'blob req: GET/HEAD requests for blobs in the registry\'s access log during pull + create + run.',
      'estargz-noopt: every layer converted to eStargz as is; estargz: the files the workload opened (recorded once on a lazy mount) first in their layers, prefetched at mount.',
    ],
    images: prepared.map((p) => p.info),
    results: cells,
  }
  const markdown = markdownTable(results)
  if (o.outDir) {
    await mkdir(o.outDir, { recursive: true })
    await writeFile(join(o.outDir, 'results.json'), JSON.stringify(results, null, 2) + '\n')
    await writeFile(join(o.outDir, 'results.md'), markdown)
    await writeFile(join(o.outDir, 'chart.svg'), chartSvg(results))
  }
  return { results, markdown, failed: cells.some((c) => c.errors.length > 0) }
}
