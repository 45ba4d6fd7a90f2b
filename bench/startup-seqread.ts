/**
 * npm run bench:startup-seqread [-- --runs 3 --image huge --file PATH --rate-mbit 200 --rtt-ms 20]
 *
 * Cold sequential read through a lazily pulled layer's FUSE mount on the emulated link, the
 * reference daemon and ours in the same run (issue #13): each run, for each daemon, a fresh
 * daemon with background fetch off, a fresh containerd, `ctr-remote images rpull` of the image's
 * unoptimized eStargz form (`stargz convert`), page cache dropped, then `dd bs=1M` of FILE from
 * the layer mount that holds it. Reported: MB/s of the file (uncompressed), and the fraction of
 * the link's rate that is: the file's compressed bytes / link payload rate (23.4 MB/s at
 * 200 Mbit/s, measured by bench:link) over the time the read took. Needs root.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startBenchContainerd } from '../src/bench/containerd.js'
import { buildBenchImage, type BenchImageName } from '../src/bench/image/images.js'
import { pushOciLayout } from '../src/bench/image/oci-image.js'
import { estargzLayout } from '../src/bench/estargz-image.js'
import { createWanLink, installSignalCleanup } from '../src/bench/link/wan-link.js'
import { dropPageCache, mustRun, timed } from '../src/bench/proc.js'
import { startBenchReference } from '../src/bench/reference.js'
import { startBenchRegistry } from '../src/bench/registry.js'
import { builtDaemonCommand, startBenchStargzd } from '../src/bench/stargzd.js'
import { EstargzReader } from '../src/estargz/reader.js'
import { FileRangeSource } from '../src/estargz/file-source.js'

const { values } = parseArgs({ options: { runs: { type: 'string' }, image: { type: 'string' }, file: { type: 'string' }, 'rate-mbit': { type: 'string' }, 'rtt-ms': { type: 'string' } } })
const runs = Number(values.runs ?? 3)
const image = (values.image ?? 'huge') as BenchImageName
const file = values.file ?? 'models/bench-7b/model-00003-of-00006.safetensors'
const rateMbit = Number(values['rate-mbit'] ?? 200)
const fixtureDir = process.env.STARGZD_FIXTURE_DIR ?? '/var/tmp/stargzd-fixtures'
// Payload rate of the emulated link (src/bench/README.md: 23.4 MB/s of a 50 MB blob at 200 Mbit/s).
const linkMBps = 23.4 * rateMbit / 200
installSignalCleanup()

const log = (m: string): void => { process.stderr.write(`${m}\n`) }
const gz = await buildBenchImage(image, { fixtureDir, log })
const noopt = await estargzLayout(gz.layout, { fixtureDir, tag: `${image}-esgz-noopt`, log })

// The file's size and compressed extent, from the layer's own TOC.
let fileBytes = 0
let compressedBytes = 0
for (const l of noopt.layers) {
  const src = await FileRangeSource.open(join(noopt.dir, 'blobs', 'sha256', l.digest.slice(7)))
  try {
    const r = await EstargzReader.open(src)
    const chunks = r.index.chunks(file)
    if (chunks.length === 0) continue
    fileBytes = r.index.entries.get(file)?.size ?? 0
    compressedBytes = chunks.reduce((n, c) => n + (c.compressedEnd - c.compressedOffset), 0)
  } finally { await src.close() }
}
if (fileBytes === 0) throw new Error(`${file} is not a regular file of ${image}`)
log(`${file}: ${(fileBytes / 1e6).toFixed(1)} MB, ${(compressedBytes / 1e6).toFixed(1)} MB compressed; the link allows ${(linkMBps * fileBytes / compressedBytes).toFixed(1)} MB/s of it`)

const ours = await builtDaemonCommand()
const registry = await startBenchRegistry({})
const link = await createWanLink({ upstream: { host: registry.host, port: registry.port }, rateMbit, rttMs: Number(values['rtt-ms'] ?? 20) })
const results: Record<'reference' | 'ours', number[]> = { reference: [], ours: [] }

/** The FUSE mount under `root` that holds `file`. */
async function layerMountWith(root: string): Promise<string> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')
  for (const l of lines) {
    const f = l.split(' ')
    const mp = f[4]
    const fstype = f[f.indexOf('-') + 1]
    if (mp?.startsWith(root) && fstype?.startsWith('fuse') && existsSync(join(mp, file))) return mp
  }
  throw new Error(`no FUSE mount under ${root} holds ${file}`)
}

try {
  await pushOciLayout(noopt, `${registry.address}/bench/${image}:noopt`)
  const ref = `${link.address}/bench/${image}:noopt`
  for (let run = 1; run <= runs; run++) {
    for (const who of ['reference', 'ours'] as const) {
      const ref_ = who === 'reference' ? await startBenchReference({ registryHost: link.address, noBackgroundFetch: true }) : undefined
      const sgd = who === 'ours' ? await startBenchStargzd({ command: ours, extraConfig: ['no_background_fetch = true'] }) : undefined
      const root = (ref_?.dir ?? sgd?.dir) as string
      const ctrd = await startBenchContainerd({ stargzSocket: (ref_?.socket ?? sgd?.socket) as string })
      try {
        const [remoteBin, rg] = ctrd.ctrRemoteArgv()
        await mustRun(remoteBin, [...rg, 'images', 'rpull', '--plain-http', '--snapshotter', 'stargz', ref], { timeoutMs: 600_000 })
        const mp = await layerMountWith(root)
        await dropPageCache()
        const d = await timed('dd', [`if=${join(mp, file)}`, 'of=/dev/null', 'bs=1M'], { timeoutMs: 600_000 })
        const mbps = fileBytes / 1e6 / (d.ms / 1000)
        results[who].push(mbps)
        log(`run ${run} ${who}: ${mbps.toFixed(1)} MB/s (${(d.ms / 1000).toFixed(2)} s)`)
      } finally {
        await ctrd.close().catch(() => undefined)
        await sgd?.close().catch(() => undefined)
        await ref_?.close().catch(() => undefined)
      }
    }
  }
} finally {
  await link.close().catch(() => undefined)
  await registry.close().catch(() => undefined)
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] as number }
const allowed = linkMBps * fileBytes / compressedBytes
process.stdout.write(`### Cold sequential read, ${image}:${file} (${(fileBytes / 1e6).toFixed(1)} MB, ${(compressedBytes / 1e6).toFixed(1)} MB compressed), ${rateMbit} Mbit/s, background fetch off, median of ${runs}\n\n`)
process.stdout.write('| daemon | MB/s | of the link | runs |\n|---|---:|---:|---|\n')
for (const who of ['reference', 'ours'] as const) {
  const m = median(results[who])
  process.stdout.write(`| ${who === 'ours' ? 'stargzd' : 'reference'} | ${m.toFixed(1)} | ${(100 * m / allowed).toFixed(0)}% | ${results[who].map((x) => x.toFixed(1)).join(', ')} |\n`)
}
