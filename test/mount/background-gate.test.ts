// `stargz mount`'s layer opener shares one priority gate across layers and counts opening a layer
// as on-demand work, as the daemon does: right after the layers open, no background fetch has
// sent a request yet (it waits for the grace period, LIBRARY_DEFAULTS.backgroundGraceMs = 2 s).
// Before, each layer had its own idle gate and started fetching the whole blob at once (issue #13).
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { tarOf, type TarFile } from '../../harness/image.js'
import { MemoryCache } from '../../src/cache/memory-cache.js'
import { convertLayer } from '../../src/estargz/writer.js'
import { TOC_DIGEST_ANNOTATION, type RangeSource } from '../../src/estargz/types.js'
import { stargzLayerOpener } from '../../src/mount/registry-source.js'
import type { Layer } from '../../src/layer/types.js'

const work = await mkdtemp(join(tmpdir(), 'stargz-gate-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

async function layerBlob(seed: number): Promise<{ data: Buffer; tocDigest: string }> {
  const files: TarFile[] = []
  for (let i = 0; i < 40; i++) files.push({ name: `d/f${i}`, data: Buffer.alloc(64 * 1024, (seed * 31 + i) & 0xff) })
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  const conv = await convertLayer((async function* () { yield tarOf(files) })(), out, { compressionLevel: 1, tmpDir: work })
  return { data: Buffer.concat(chunks), tocDigest: conv.tocDigest }
}

class CountingSource implements RangeSource {
  reads = 0
  constructor(private readonly data: Buffer) {}
  get size(): number { return this.data.length }
  async read(offset: number, length: number): Promise<Buffer> { this.reads++; return this.data.subarray(offset, offset + length) }
  async readRanges(ranges: ReadonlyArray<{ offset: number; length: number }>): Promise<Buffer[]> {
    this.reads++
    return ranges.map((r) => this.data.subarray(r.offset, r.offset + r.length))
  }
}

t.test('no background fetch right after the layers open', async (t) => {
  const open = stargzLayerOpener(new MemoryCache({ maxBytes: 64 << 20 }), pino({ level: 'silent' }))
  const layers: Layer[] = []
  const sources: CountingSource[] = []
  for (const seed of [1, 2]) {
    const b = await layerBlob(seed)
    const src = new CountingSource(b.data)
    sources.push(src)
    layers.push(await open(src, { digest: `sha256:${String(seed).repeat(64)}`, size: b.data.length, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', annotations: { [TOC_DIGEST_ANNOTATION]: b.tocDigest } }, 'example.com/x:y'))
  }
  t.teardown(() => Promise.all(layers.map((l) => l.close())))
  const afterOpen = sources.map((s) => s.reads)
  await sleep(300) // well inside the grace period
  t.same(sources.map((s) => s.reads), afterOpen, `no requests after opening (TOC reads: ${afterOpen.join(', ')})`)
})
