import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { PassThrough } from 'node:stream'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, gzipLayer, sha256, tarOf, type LayerBlob } from '../../harness/image.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { convertLayer } from '../../src/estargz/writer.js'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { openSourceFromArgs, remoteFlagSpec } from '../../src/cli/remote.js'
import { parseArgs } from '../../src/cli/args.js'
import { InvalidArgumentError } from '../../src/errors.js'

const execFileP = promisify(execFile)
const root = new URL('../../', import.meta.url).pathname
const reg = await startRegistry()
t.teardown(() => reg.close())
const work = await mkdtemp(join(tmpdir(), 'stargz-inspect-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const hostsDir = join(work, 'certs.d')
const dockerConfig = join(work, 'docker')
await mkdir(dockerConfig, { recursive: true })
await writeFile(join(dockerConfig, 'config.json'), '{}')

async function estargzLayer(files: Array<{ name: string; data: Buffer }>, opts: { legacy?: boolean } = {}): Promise<LayerBlob> {
  const tar = tarOf(files)
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (c: Buffer) => chunks.push(c))
  const res = await convertLayer((async function* () { yield tar })(), out, { legacyFooter: opts.legacy === true })
  return {
    data: Buffer.concat(chunks), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: res.diffID,
    annotations: { 'containerd.io/snapshot/stargz/toc.digest': res.tocDigest, 'io.containers.estargz.uncompressed-size': String(res.uncompressedSize) },
  }
}

const plain = gzipLayer([{ name: 'plain.txt', data: Buffer.from('not estargz\n') }])
const esgz = await estargzLayer([{ name: 'etc/hello.txt', data: Buffer.from('hello from estargz\n') }])
const legacy = await estargzLayer([{ name: 'old.txt', data: Buffer.from('legacy\n') }], { legacy: true })
const img = buildImage({ layers: [plain, esgz, legacy] })
const seed = new RegistryClient({ plainHttp: true, hostsDir, credentials: new StaticCredentials({}) })
t.teardown(() => seed.close())
const ref = `${reg.host}/inspect/app:v1`
await seed.pushImage(ref, img.config, img.layers)
const single = buildImage({ layers: [esgz] })
await seed.pushImage(`${reg.host}/inspect/single:v1`, single.config, single.layers)

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], { env: { ...process.env, DOCKER_CONFIG: dockerConfig }, cwd: root })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string }
    return { code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }
  }
}

t.test('stargz inspect --json prints JSON describing each layer', async (t) => {
  const r = await cli(['inspect', ref, '--plain-http', '--hosts-dir', hostsDir, '--stats', '--json'])
  t.equal(r.code, 0, r.stderr)
  const j = JSON.parse(r.stdout) as { platform: string; manifestDigest: string; configDigest: string; layers: Array<{ digest: string; size: number; mediaType: string; estargz: boolean; tocDigest?: string; footer?: { kind: string }; annotations: Record<string, string> }> }
  t.equal(j.platform, 'linux/amd64')
  t.equal(j.manifestDigest, img.manifestDigest)
  t.equal(j.configDigest, img.configDigest)
  t.same(j.layers.map((l) => l.estargz), [false, true, true])
  t.same(j.layers.map((l) => l.footer?.kind), [undefined, 'estargz', 'legacy'])
  t.same(j.layers.map((l) => l.digest), [plain, esgz, legacy].map((l) => sha256(l.data)))
  t.same(j.layers.map((l) => l.size), [plain, esgz, legacy].map((l) => l.data.length))
  t.equal(j.layers[1]?.tocDigest, esgz.annotations?.['containerd.io/snapshot/stargz/toc.digest'])
  t.same(j.layers[1]?.annotations, esgz.annotations)
  t.match(r.stderr, /inspect fetched 153 bytes of layer data in 3 requests/, 'one 51-byte tail read per gzip layer')
})

t.test('stargz inspect prints a table by default', async (t) => {
  const r = await cli(['inspect', ref, '--plain-http', '--hosts-dir', hostsDir])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^PLATFORM +linux\/amd64$/m)
  t.match(r.stdout, new RegExp(`^MANIFEST +${img.manifestDigest}`, 'm'))
  t.match(r.stdout, /^# +MEDIA TYPE +SIZE +DIGEST +ESTARGZ +TOC DIGEST$/m)
  t.match(r.stdout, /^0 +application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip +\d+ +sha256:\S+ +no +-$/m)
  t.match(r.stdout, /^1 .* yes +sha256:/m)
  t.match(r.stdout, /^2 .* legacy +sha256:/m)
})

t.test('stargz inspect errors are one clear line', async (t) => {
  const r = await cli(['inspect', `${reg.host}/inspect/app:missing`, '--plain-http', '--hosts-dir', hostsDir])
  t.equal(r.code, 1)
  t.match(r.stderr, /^stargz: ERR_NOT_FOUND: manifest missing not found in 127\.0\.0\.1:\d+\/inspect\/app\n$/)
  const bad = await cli(['inspect', 'Bad/Ref'])
  t.match(bad.stderr, /ERR_INVALID_ARGUMENT: invalid image reference "Bad\/Ref"/)
})

t.test('openSourceFromArgs: layer choice, TOC digest annotation, stats, local files', async (t) => {
  const base = ['--plain-http', '--hosts-dir', hostsDir]
  const spec = { values: [...remoteFlagSpec.values, 'toc-digest'], booleans: remoteFlagSpec.booleans }
  const e = await openSourceFromArgs(ref, parseArgs(base, spec)).then(() => undefined, (err: unknown) => err as Error)
  t.ok(e instanceof InvalidArgumentError, 'several layers and no --layer')
  t.match(e?.message, /has 3 layers; choose one with --layer/)
  const byIndex = await openSourceFromArgs(ref, parseArgs([...base, '--layer', '1'], spec))
  t.teardown(() => byIndex.close())
  t.equal(byIndex.tocDigest, esgz.annotations?.['containerd.io/snapshot/stargz/toc.digest'])
  const reader = await BlobReader.open(byIndex.source, { tocDigest: byIndex.tocDigest as string })
  t.equal((await reader.readFile('etc/hello.txt')).toString(), 'hello from estargz\n')
  t.ok(byIndex.stats().requests >= 1)
  const byDigest = await openSourceFromArgs(ref, parseArgs([...base, '--layer', sha256(legacy.data)], spec))
  t.teardown(() => byDigest.close())
  t.equal(byDigest.source.size, legacy.data.length)
  const one = await openSourceFromArgs(`${reg.host}/inspect/single:v1`, parseArgs(base, spec))
  t.teardown(() => one.close())
  t.equal(one.source.size, esgz.data.length, 'single layer needs no --layer')
  const local = join(work, 'local.esgz')
  await writeFile(local, esgz.data)
  const file = await openSourceFromArgs(local, parseArgs(['--toc-digest', 'sha256:' + 'b'.repeat(64)], spec))
  t.teardown(() => file.close())
  t.equal(file.source.size, esgz.data.length)
  t.equal(file.tocDigest, 'sha256:' + 'b'.repeat(64))
  const neither = await openSourceFromArgs(join(work, 'No Such File'), parseArgs([], spec)).then(() => undefined, (err: unknown) => err as Error)
  t.match(neither?.message, /is neither an existing file nor an image reference/)
})
