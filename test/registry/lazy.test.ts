import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, tarOf, type TarFile } from '../../harness/image.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { convertLayer } from '../../src/estargz/writer.js'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'

const reg = await startRegistry()
t.teardown(() => reg.close())
const work = await mkdtemp(join(tmpdir(), 'stargz-lazy-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

t.test('cat of a 1 KiB file from a 200 MB eStargz layer fetches < 1% of the blob', async (t) => {
  // Random payloads so the compressed blob really is ~200 MB.
  const files: TarFile[] = []
  for (let i = 0; i < 50; i++) files.push({ name: `data/big-${String(i).padStart(2, '0')}.bin`, data: randomBytes(4 << 20) })
  const small = randomBytes(1024)
  files.splice(25, 0, { name: 'etc/small.conf', data: small })
  const tar = tarOf(files)
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  const conv = await convertLayer((async function* () { yield tar })(), out, { compressionLevel: 1, tmpDir: work })
  const blobData = Buffer.concat(chunks)
  t.ok(blobData.length > 200_000_000, `blob is ${blobData.length} bytes`)
  const img = buildImage({ layers: [{ data: blobData, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } }] })

  const client = new RegistryClient({ plainHttp: true, hostsDir: join(work, 'certs.d'), credentials: new StaticCredentials({}) })
  t.teardown(() => client.close())
  const ref = `${reg.host}/lazy/big:v1`
  await client.pushImage(ref, img.config, img.layers)

  const image = await client.resolve(ref)
  const layer = image.layers[0]
  if (!layer) throw new Error('no layer')
  const blob = await client.blob(ref, layer.digest, layer.size)
  t.teardown(() => blob.close())
  const reader = await BlobReader.open(blob, { tocDigest: layer.annotations?.[TOC_DIGEST_ANNOTATION] as string })
  const got = await reader.readFile('etc/small.conf')
  t.ok(got.equals(small), 'the right 1 KiB')
  const s = blob.stats()
  t.ok(s.bytesFetched < layer.size / 100, `fetched ${s.bytesFetched} bytes of ${layer.size} (${(100 * s.bytesFetched / layer.size).toFixed(3)}%) in ${s.requests} requests`)
  t.ok(s.bytesFetched >= 1024, 'and did fetch the file')
})
