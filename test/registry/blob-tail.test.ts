// Opening a lazy layer is one request: a suffix-range GET gives size, footer and TOC (issue #13).
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, tarOf, type TarFile } from '../../harness/image.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { convertLayer } from '../../src/estargz/writer.js'
import { loadToc } from '../../src/estargz/toc-read.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'

const reg = await startRegistry()
t.teardown(() => reg.close())
const work = await mkdtemp(join(tmpdir(), 'stargz-tail-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

const files: TarFile[] = []
for (let i = 0; i < 200; i++) files.push({ name: `etc/f${i}.conf`, data: Buffer.from(`file ${i}\n`.repeat(50 + i)) })
const out = new PassThrough()
const chunks: Buffer[] = []
out.on('data', (c: Buffer) => chunks.push(c))
const conv = await convertLayer((async function* () { yield tarOf(files) })(), out, { compressionLevel: 6, tmpDir: work })
const blobData = Buffer.concat(chunks)
const img = buildImage({ layers: [{ data: blobData, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } }] })
const client = new RegistryClient({ plainHttp: true, hostsDir: join(work, 'certs.d'), credentials: new StaticCredentials({}) })
t.teardown(() => client.close())
const ref = `${reg.host}/tail/layer:v1`
await client.pushImage(ref, img.config, img.layers)
const digest = (await client.resolve(ref)).layers[0]?.digest as string

t.test('suffix range bigger than the TOC: size from Content-Range, TOC loaded with 1 request', async (t) => {
  const blob = await client.blobWithTail(ref, digest, 256 * 1024)
  t.teardown(() => blob.close())
  t.equal(blob.size, blobData.length, 'size from the suffix answer')
  const loaded = await loadToc(blob, { tocDigest: conv.tocDigest })
  t.equal(loaded.tocDigest, conv.tocDigest, 'TOC verified')
  t.equal(blob.stats().requests, 1, 'one request in all (no HEAD, no footer read, no TOC read)')
  const body = await blob.read(0, 10)
  t.ok(body.equals(blobData.subarray(0, 10)), 'the first bytes')
  const tailStart = Math.max(0, blobData.length - 256 * 1024)
  t.equal(blob.stats().requests, tailStart > 0 ? 2 : 1, 'reads outside the tail go to the registry, inside it not')
})

t.test('suffix range smaller than the TOC: one more read for the rest', async (t) => {
  const blob = await client.blobWithTail(ref, digest, 64)
  t.teardown(() => blob.close())
  t.equal(blob.size, blobData.length)
  const loaded = await loadToc(blob, { tocDigest: conv.tocDigest })
  t.equal(loaded.toc.entries.length > 200, true, 'all entries')
  t.ok(blob.stats().requests <= 3, `${blob.stats().requests} requests`)
})

t.test('TOC bigger than the tail: one more request, for only the bytes before the tail', async (t) => {
  // Find the TOC member's extent, then open with a tail that holds the footer and half the TOC.
  const probe = await client.blobWithTail(ref, digest, 256 * 1024)
  const full = await loadToc(probe, { tocDigest: conv.tocDigest })
  await probe.close()
  const tocOffset = full.footer.tocOffset
  const tocLen = blobData.length - tocOffset
  t.ok(tocLen > 200, `TOC member + footer is ${tocLen} bytes`)
  const tailLen = Math.floor(tocLen / 2)
  const blob = await client.blobWithTail(ref, digest, tailLen)
  t.teardown(() => blob.close())
  const loaded = await loadToc(blob, { tocDigest: conv.tocDigest })
  t.equal(loaded.tocDigest, conv.tocDigest, 'TOC verified from head + tail')
  t.equal(blob.stats().requests, 2, 'the suffix GET and one read of the missing head')
  t.equal(blob.stats().bytesFetched, tocLen, 'each TOC byte fetched once (head, then the tail)')
})

t.test('suffix range larger than the blob: the whole blob, digest checked', async (t) => {
  const blob = await client.blobWithTail(ref, digest, blobData.length * 2)
  t.teardown(() => blob.close())
  t.equal(blob.size, blobData.length)
  const all = await blob.read(0, blob.size)
  t.ok(all.equals(blobData))
  t.equal(blob.stats().requests, 1)
})

t.test('unknown blob: NotFound', async (t) => {
  await t.rejects(client.blobWithTail(ref, 'sha256:' + '0'.repeat(64), 1024), { code: 'ERR_NOT_FOUND' })
})
