/** Multi-platform sources: every platform converted into a new index, or only --platform. */
import t from 'tap'
import { join } from 'node:path'
import { RegistryInput } from '../../src/convert/registry-io.js'
import { RegistryClient } from '../../src/registry/client.js'
import { parseReference } from '../../src/registry/reference.js'
import { formatPlatform, hostPlatform } from '../../src/registry/manifest.js'
import { buildImage, gzipLayer, writeOciLayout } from '../../harness/image.js'
import { startRegistry } from '../../harness/registry.js'
import { runCommand, tempDir, verifyLayer } from '../../harness/convert-fixtures.js'

t.setTimeout(300_000)

t.test('convert an index', async (t) => {
  const dir = await tempDir(t, 'stargz-convert-index-')
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const client = new RegistryClient({ plainHttp: true })
  t.teardown(() => client.close())
  const shared = gzipLayer([{ name: 'etc/', type: 'dir' }, { name: 'etc/shared', data: Buffer.from('same on every platform\n') }])
  const amd = buildImage({ layers: [shared, gzipLayer([{ name: 'arch', data: Buffer.from('amd64\n') }])] })
  const arm = buildImage({ layers: [shared, gzipLayer([{ name: 'arch', data: Buffer.from('arm64\n') }])], architecture: 'arm64', variant: 'v8' })
  const layout = join(dir, 'layout')
  await writeOciLayout(layout, 'multi', [amd, arm])
  const cache = join(dir, 'cache')

  const all = await runCommand('convert', [`oci:${layout}:multi`, `${reg.host}/out/multi:all`, '--plain-http', '--cache-dir', cache, '--json', '--all-platforms'])
  t.equal(all.code, 0, 'exits 0', { stderr: all.stderr })
  const s = JSON.parse(all.stdout) as { digest: string; mediaType: string; images: Array<{ platform: string; layers: Array<{ action: string }> }> }
  t.equal(s.mediaType, 'application/vnd.oci.image.index.v1+json')
  t.same(s.images.map((i) => i.platform).sort(), ['linux/amd64', 'linux/arm64/v8'])
  const idx = await client.fetchManifest(`${reg.host}/out/multi:all`)
  t.equal(idx.digest, s.digest)
  if (idx.parsed.kind !== 'index') throw new Error('not an index')
  t.same(idx.parsed.index.manifests.map((m) => m.platform?.architecture), ['amd64', 'arm64'], 'platforms kept, in order')
  for (const plat of ['linux/amd64', 'linux/arm64/v8']) {
    const img = await client.resolve(`${reg.host}/out/multi:all`, { platform: plat })
    const input = new RegistryInput(client, parseReference(`${reg.host}/out/multi:all`))
    for (const l of img.layers) await verifyLayer(input, l)
    const top = await verifyLayer(input, img.layers[1] as never)
    t.equal((await top.readFile('arch')).toString(), plat.includes('arm') ? 'arm64\n' : 'amd64\n', `${plat} top layer`)
  }
  t.equal(s.images.flatMap((i) => i.layers).length, 4)
  const shared0 = s.images.map((i) => i.layers[0] as unknown as { action: string; digest: string })
  t.equal(shared0[0]?.digest, shared0[1]?.digest, 'the shared layer converts to the same blob for both platforms')
  t.same(shared0.map((l) => l.action).sort(), ['cached', 'converted'], 'and is converted once')

  const one = await runCommand('convert', [`oci:${layout}:multi`, `${reg.host}/out/multi:arm`, '--plain-http', '--cache-dir', cache, '--json', '--platform', 'linux/arm64/v8'])
  t.equal(one.code, 0, 'exits 0', { stderr: one.stderr })
  const s1 = JSON.parse(one.stdout) as typeof s
  t.same(s1.images.map((i) => i.platform), ['linux/arm64/v8'], 'only the asked platform')
  t.same(s1.images[0]?.layers.map((l) => l.action), ['cached', 'cached'], 'reuses the conversions of the first run')

  // No --platform and no --all-platforms: the host platform only, as ctr-remote converts.
  const host = await runCommand('convert', [`oci:${layout}:multi`, `${reg.host}/out/multi:host`, '--plain-http', '--cache-dir', cache, '--json'])
  t.equal(host.code, 0, 'exits 0', { stderr: host.stderr })
  t.same((JSON.parse(host.stdout) as typeof s).images.map((i) => i.platform), [formatPlatform(hostPlatform())], 'the host platform by default')

  const none = await runCommand('convert', [`oci:${layout}:multi`, `${reg.host}/out/multi:none`, '--plain-http', '--cache-dir', cache, '--platform', 'linux/s390x'])
  t.equal(none.code, 1)
  t.match(none.stderr, /ERR_NOT_FOUND.*no image for platform linux\/s390x/)
})
