/**
 * The python3 image end to end, as a platform team would use the product: a plain gzip image is
 * converted by `stargz convert` and workload-optimized by `stargz optimize`; real containerd with
 * stargzd pulls both lazily (`ctr-remote image rpull`) and runs `python3 -c 'print("hello")'`.
 * With background fetch off, the optimized image's start-up fetches (almost) nothing outside its
 * prefetch range: counted from the registry's side, range by range.
 */
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startContainerd } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy, type LoggedRequest } from '../../harness/fault-proxy.js'
import { runStargz } from '../../harness/cli.js'
import { BufferSource } from '../../harness/mini-estargz.js'
import { buildBenchImage } from '../../src/bench/image/images.js'
import { pushOciLayout } from '../../src/bench/image/oci-image.js'
import { RegistryClient } from '../../src/registry/client.js'
import { EstargzReader } from '../../src/estargz/reader.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'
import { TOC_TAIL_BYTES } from '../../src/fs/lazy-filesystem.js'
import { daemonScratch } from '../../harness/stargzd.js'

t.setTimeout(1_200_000)

interface Span { start: number; end: number }
function ranges(r: LoggedRequest, size: number): Span[] {
  if (r.range === undefined) return [{ start: 0, end: size }]
  return r.range.replace(/^bytes=/, '').split(',').map((p) => {
    const [a = '', b = ''] = p.trim().split('-')
    return a === '' ? { start: size - Number(b), end: size } : { start: Number(a), end: b === '' ? size : Number(b) + 1 }
  })
}

t.test('python3: convert, optimize, lazy pull + run under containerd', async (t) => {
  const { dir, sock, start } = await daemonScratch(t, 'sgd-py-')
  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const proxy = await startFaultProxy(registry.url)
  t.teardown(() => proxy.close())

  const image = await buildBenchImage('python3')
  const src = `${registry.host}/py/app:gzip`
  await pushOciLayout(image.layout, src)
  const common = ['--plain-http', '--hosts-dir', join(dir, 'certs.d'), '--cache-dir', join(dir, 'convert-cache')]
  const conv = await runStargz(['convert', src, `${registry.host}/py/app:esgz`, ...common, '--json'], { timeoutMs: 600_000 })
  t.equal(conv.code, 0, `stargz convert: ${conv.stderr.slice(-2000)}`)
  const opt = await runStargz(['optimize', src, `${registry.host}/py/app:opt`, ...common, '--state-dir', join(dir, 'opt-state'), '--', 'python3', '-c', 'print("hello")'], { timeoutMs: 600_000 })
  t.equal(opt.code, 0, `stargz optimize: ${opt.stderr.slice(-2000)}`)

  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'no_background_fetch = true\n')
  const sgd = await start(['--config', cfg, '--hosts-dir', join(dir, 'certs.d')])
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())

  for (const tag of ['esgz', 'opt']) {
    const ref = `${proxy.host}/py/app:${tag}`
    proxy.clearLog()
    const before = sgd.logs.filter((l) => l.msg === 'remote-snapshot-prepared').length
    const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', ref])
    t.equal(rp.code, 0, `rpull ${tag}: ${rp.stderr}`)
    t.equal(sgd.logs.filter((l) => l.msg === 'remote-snapshot-prepared').length - before, image.layout.layers.length, `${tag}: every layer mounted lazily`)
    const run = await ctrd.ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, `py-${tag}`, 'python3', '-c', 'print("hello")'])
    t.equal(run.code, 0, run.stderr)
    t.match(run.stdout, /^hello$/m, `${tag}: python3 printed hello from a lazily pulled image`)

    // What the registry served for the layers, against each layer's layout.
    const client = new RegistryClient({ plainHttp: true, hostsDir: join(dir, 'certs.d') })
    const resolved = await client.resolve(`${registry.host}/py/app:${tag}`)
    let served = 0
    let outside = 0
    let total = 0
    for (const layer of resolved.layers) {
      const blob = await client.fetchBlob(`${registry.host}/py/app:${tag}`, layer.digest, layer.size)
      total += blob.length
      const r = await EstargzReader.open(new BufferSource(blob), { tocDigest: layer.annotations?.[TOC_DIGEST_ANNOTATION] as string })
      const prefetchEnd = r.index.landmark?.offset ?? 0
      // The one suffix-range read that finds footer + TOC (issue #13): the blob's last TOC_TAIL_BYTES.
      const metaStart = Math.min(r.footer.tocOffset, blob.length - TOC_TAIL_BYTES)
      for (const req of proxy.log.filter((x) => x.method === 'GET' && x.path.endsWith(`/blobs/${layer.digest}`))) {
        for (const s of ranges(req, blob.length)) {
          served += s.end - s.start
          if (s.end <= prefetchEnd || s.start >= metaStart) continue
          outside += s.end - Math.max(s.start, prefetchEnd)
        }
      }
    }
    await client.close()
    t.ok(served < total / 4, `${tag}: registry served ${served} of ${total} layer bytes (${(100 * served / total).toFixed(1)}%)`)
    if (tag === 'opt') {
      t.ok(outside <= served * 0.05, `optimized: ${outside} bytes fetched outside the prefetch range and the TOC (${(100 * outside / served).toFixed(2)}% of ${served})`)
    } else {
      t.ok(outside > 0, `unoptimized: on-demand reads fetched ${outside} bytes outside any prefetch range`)
    }
  }
})
