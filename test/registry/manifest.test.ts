import t from 'tap'
import fc from 'fast-check'
import { hostPlatform, parseManifest, parsePlatform, selectManifest, type ImageIndex } from '../../src/registry/manifest.js'
import { multipartBoundary, parseContentRange, parseMultipartByteranges } from '../../src/registry/multipart.js'
import { parseRetryAfter } from '../../src/registry/transport.js'
import { coalesce, signedUrlExpiry } from '../../src/registry/blob.js'
import { ManifestError } from '../../src/registry/errors.js'
import { InvalidArgumentError, NotFoundError } from '../../src/errors.js'

const D = (c: string): string => 'sha256:' + c.repeat(64)
const ctx = { registry: 'r.example', repository: 'a/b' }

function caught(fn: () => unknown): Error | undefined {
  try { fn() } catch (e) { return e as Error }
  return undefined
}

t.test('parseManifest: Docker and OCI manifests and indexes', async (t) => {
  const docker = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: D('a'), size: 10 },
    layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: D('b'), size: 20, annotations: { 'containerd.io/snapshot/stargz/toc.digest': D('c') } }],
  }))
  const m = parseManifest(docker, undefined, ctx)
  t.equal(m.kind, 'manifest')
  if (m.kind === 'manifest') t.equal(m.manifest.layers[0]?.annotations?.['containerd.io/snapshot/stargz/toc.digest'], D('c'))
  const list = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
    manifests: [{ mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: D('d'), size: 5, platform: { os: 'linux', architecture: 'amd64' } }],
  }))
  t.equal(parseManifest(list, undefined, ctx).kind, 'index')
  const ociNoType = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }))
  t.equal(parseManifest(ociNoType, 'application/vnd.oci.image.index.v1+json', ctx).kind, 'index', 'media type from Content-Type')

  const bad: Array<[string, RegExp]> = [
    ['{', /not valid JSON/],
    ['[]', /not a JSON object/],
    [JSON.stringify({ schemaVersion: 1, name: 'x' }), /schema 1 manifests are not supported/],
    [JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'x', digest: 'sha256:zz', size: 1 }, layers: [] }), /config: invalid digest/],
    [JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'x', digest: D('a'), size: -1 }, layers: [] }), /size must be a non-negative integer/],
    [JSON.stringify({ schemaVersion: 2, mediaType: 'text/plain' }), /unsupported manifest media type "text\/plain"/],
    [JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'x', digest: D('a'), size: 1 }, layers: [{ mediaType: 'y', digest: D('b'), size: 1, annotations: { k: 1 } }] }), /layers\[0\]: annotation "k" is not a string/],
  ]
  for (const [body, re] of bad) {
    const e = caught(() => parseManifest(Buffer.from(body), undefined, ctx))
    t.ok(e instanceof ManifestError, body.slice(0, 40))
    t.match(e?.message, re)
    t.match(e?.message, /registry r\.example, repository a\/b/)
  }
})

t.test('platforms', async (t) => {
  t.same(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' })
  t.same(parsePlatform('linux/x86_64'), { os: 'linux', architecture: 'amd64' })
  t.ok(caught(() => parsePlatform('linux')) instanceof InvalidArgumentError)
  t.ok(caught(() => parsePlatform('a/b/c/d')) instanceof InvalidArgumentError)
  if (process.arch === 'x64') t.same(hostPlatform(), { os: 'linux', architecture: 'amd64' })
  const idx: ImageIndex = {
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D('1'), size: 1, platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D('2'), size: 1, platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D('3'), size: 1, platform: { os: 'linux', architecture: 'arm64' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D('4'), size: 1, platform: { os: 'unknown', architecture: 'unknown' } },
    ],
  }
  t.equal(selectManifest(idx, parsePlatform('linux/amd64'), ctx).digest, D('1'))
  t.equal(selectManifest(idx, parsePlatform('linux/arm64/v8'), ctx).digest, D('3'), 'missing variant on arm64 means v8')
  t.equal(selectManifest(idx, parsePlatform('linux/arm/v7'), ctx).digest, D('2'), 'arm v7 runs v6')
  const e = caught(() => selectManifest(idx, parsePlatform('linux/arm/v5'), ctx))
  t.ok(e instanceof NotFoundError)
  t.match(e?.message, /no manifest for platform linux\/arm\/v5 .*available: linux\/amd64, linux\/arm\/v6, linux\/arm64, unknown\/unknown/)
})

t.test('multipart/byteranges parsing survives the boundary inside part data', async (t) => {
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.nat(1_000_000), fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.boolean()), { minLength: 1, maxLength: 8 }),
    (parts) => {
      const boundary = 'B0UNDARY'
      const body: Buffer[] = [Buffer.from('preamble\r\n')]
      const want = parts.map(([start, bytes, inject]) => {
        const data = Buffer.from(bytes)
        if (inject && data.length > 12) Buffer.from(`\r\n--${boundary}`).copy(data, 1)
        body.push(Buffer.from(`--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${start}-${start + data.length - 1}/2000000\r\n\r\n`), data, Buffer.from('\r\n'))
        return { start, data }
      })
      body.push(Buffer.from(`--${boundary}--\r\n`))
      const got = parseMultipartByteranges(Buffer.concat(body), boundary)
      return got.length === want.length && got.every((p, i) => p.start === want[i]?.start && p.data.equals(want[i]?.data as Buffer))
    },
  ))
  t.pass('property held')
  t.equal(multipartBoundary('multipart/byteranges; boundary="a b"'), 'a b')
  t.equal(multipartBoundary('multipart/byteranges; boundary=xyz; charset=x'), 'xyz')
  t.equal(multipartBoundary('application/octet-stream'), undefined)
  t.same(parseContentRange('bytes 5-9/100'), { start: 5, end: 9, total: 100 })
  t.same(parseContentRange('bytes 5-9/*'), { start: 5, end: 9, total: undefined })
  t.equal(parseContentRange('bytes 9-5/100'), undefined)
  t.throws(() => parseMultipartByteranges(Buffer.from('--B\r\nContent-Range: bytes 0-99/100\r\n\r\nshort'), 'B'), /truncated/)
})

t.test('small helpers', async (t) => {
  t.equal(parseRetryAfter('3'), 3000)
  t.equal(parseRetryAfter(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1)), 10_000)
  t.equal(parseRetryAfter('soon'), undefined)
  t.same(coalesce([{ offset: 10, length: 5 }, { offset: 0, length: 10 }, { offset: 30, length: 1 }, { offset: 12, length: 1 }]), [{ offset: 0, length: 15 }, { offset: 30, length: 1 }])
  t.equal(signedUrlExpiry(new URL('https://s3/x?X-Amz-Date=20300101T000000Z&X-Amz-Expires=60')), Date.UTC(2030, 0, 1, 0, 1))
  t.equal(signedUrlExpiry(new URL('https://cdn/x?Expires=1900000000&Signature=s')), 1_900_000_000_000)
  t.equal(signedUrlExpiry(new URL('https://blob/x?se=2030-01-01T00:00:00Z&sig=s')), Date.UTC(2030, 0, 1))
  t.equal(signedUrlExpiry(new URL('https://plain/x')), undefined)
})
