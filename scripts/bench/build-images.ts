/**
 * Build (or find cached) the start-up benchmark's images and print their sizes and build times;
 * with --push HOST:PORT also push each to that registry as HOST:PORT/bench/NAME:latest.
 *
 *   node --import tsx scripts/bench/build-images.ts [busybox|python3|huge ...] [--push 127.0.0.1:5000] [--json]
 */
import { BENCH_IMAGES, buildBenchImage, type BenchImage, type BenchImageName } from '../../src/bench/image/images.js'
import { pushOciLayout } from '../../src/bench/image/oci-image.js'

function parse(argv: string[]): { names: BenchImageName[]; push?: string; json: boolean } {
  const names: BenchImageName[] = []
  let push: string | undefined
  let json = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--push') push = argv[++i]
    else if (a === '--json') json = true
    else if ((BENCH_IMAGES as readonly string[]).includes(a)) names.push(a as BenchImageName)
    else throw new Error(`unknown argument ${a}; images are ${BENCH_IMAGES.join(', ')}`)
  }
  return { names: names.length ? names : [...BENCH_IMAGES], ...(push ? { push } : {}), json }
}

const mb = (n: number): string => (n / 1e6).toFixed(1)

async function main(): Promise<void> {
  const { names, push, json } = parse(process.argv.slice(2))
  const built: Array<BenchImage & { pushSeconds?: number }> = []
  for (const name of names) {
    const img = await buildBenchImage(name, { log: (m) => process.stderr.write(`[build-images] ${m}\n`) })
    let pushSeconds: number | undefined
    if (push) {
      const t0 = performance.now()
      await pushOciLayout(img.layout, `${push}/bench/${name}:latest`)
      pushSeconds = (performance.now() - t0) / 1000
    }
    built.push({ ...img, ...(pushSeconds !== undefined ? { pushSeconds } : {}) })
  }
  if (json) {
    process.stdout.write(JSON.stringify(built.map((b) => ({
      name: b.name, dir: b.layout.dir, manifest: b.layout.manifest.digest, layers: b.layout.layers.length,
      compressed: b.sizes.compressed, uncompressed: b.sizes.uncompressed, buildSeconds: b.buildSeconds,
      cached: b.cached, pushSeconds: b.pushSeconds,
    })), null, 2) + '\n')
    return
  }
  for (const b of built) {
    const layers = b.layout.layers.map((l) => `${mb(l.uncompressedSize)}→${mb(l.size)}`).join(' + ')
    process.stdout.write(`${b.name.padEnd(8)} ${mb(b.sizes.uncompressed).padStart(8)} MB → ${mb(b.sizes.compressed).padStart(7)} MB gzip` +
      `  [${layers}]  built in ${b.buildSeconds.toFixed(1)} s${b.cached ? ' (cached)' : ''}` +
      `${b.pushSeconds !== undefined ? `, pushed in ${b.pushSeconds.toFixed(1)} s` : ''}\n    ${b.layout.dir}\n`)
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`build-images: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
})
