/**
 * `stargz optimize` on the two-layer busybox image: the workload runs on a lazy FUSE mount of
 * the image, and what it opened goes first in each layer, before `.prefetch.landmark`.
 */
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parsePrioritizedList } from '../../src/convert/prioritized-list.js'
import { RegistryInput } from '../../src/convert/registry-io.js'
import { listMounts } from '../../src/fuse/unmount.js'
import { RegistryClient } from '../../src/registry/client.js'
import { parseReference } from '../../src/registry/reference.js'
import { buildImage, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { startRegistry } from '../../harness/registry.js'
import { busyboxRootfs, gzipFileLayer, prefetchOrder, readImage, runCommand, tempDir, topLayer } from '../../harness/convert-fixtures.js'

t.setTimeout(600_000)

t.test('optimize busybox: accessed files first, then the landmark', async (t) => {
  const dir = await tempDir(t, 'stargz-optimize-')
  const cacheDir = join(dir, 'cache')
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const client = new RegistryClient({ plainHttp: true })
  t.teardown(() => client.close())
  const image = buildImage({ layers: [await gzipFileLayer(await busyboxRootfs()), topLayer()] })
  const layout = join(dir, 'layout')
  await writeOciLayout(layout, 'v1', [image])
  const src = `${reg.host}/src/busybox:1`
  await skopeoPush(layout, 'v1', src)
  const record = join(dir, 'record.jsonl')
  const stateDir = join(dir, 'state')

  const r = await runCommand('optimize', [src, `${reg.host}/opt/busybox:1`, '--plain-http', '--cache-dir', cacheDir, '--json',
    '--record-out', record, '--state-dir', stateDir, '--period', '60',
    '--', '/bin/busybox', 'sh', '-c', 'cat /etc/hostname-ish && echo ran-in-$(pwd)'])
  t.equal(r.code, 0, 'optimize exits 0', { stderr: r.stderr })
  t.match(r.stderr, /stargz-test\nran-in-\//, 'the workload ran in the image rootfs, output on stderr')
  t.match(r.stderr, /workload exited with 0/)
  t.same((await listMounts()).filter((m) => m.mountpoint.startsWith(dir)), [], 'nothing left mounted')

  const recorded = parsePrioritizedList(await readFile(record, 'utf8'), record)
  // /etc/passwd first: containerd reads it (and /etc/group, absent here) when it builds the spec.
  t.same(recorded.map((x) => [x.path, x.layerIndex]), [['/etc/passwd', 0], ['/bin/busybox', 0], ['/etc/hostname-ish', 1]], 'recorded per layer, first-access order')
  const srcLayers = (JSON.parse(image.manifest.toString('utf8')) as { layers: Array<{ digest: string }> }).layers.map((l) => l.digest)
  t.same(recorded.map((x) => x.layer), [srcLayers[0], srcLayers[0], srcLayers[1]], 'each record names its source layer digest')

  const input = new RegistryInput(client, parseReference(`${reg.host}/opt/busybox:1`))
  const out = await readImage(input)
  t.equal(out.digest, (JSON.parse(r.stdout) as { digest: string }).digest)
  const [l0, l1] = out.manifest.layers
  const o0 = await prefetchOrder(input, l0 as never)
  const o1 = await prefetchOrder(input, l1 as never)
  t.equal(o0.landmark, 'prefetch')
  t.same(o0.files, ['etc/passwd', 'bin/busybox'], 'base layer: passwd and busybox before the landmark')
  t.same(o0.all.slice(0, o0.all.indexOf('.prefetch.landmark') + 1).filter((n) => n !== '' && n !== 'bin' && n !== 'etc'), ['etc/passwd', 'bin/busybox', '.prefetch.landmark'], 'only those and their parent directories precede the landmark')
  t.equal(o1.landmark, 'prefetch')
  t.same(o1.files, ['etc/hostname-ish'], 'top layer: the file cat read')

  await t.test('--prioritized-from reuses a record without running anything', async (t) => {
    const again = await runCommand('optimize', [src, `${reg.host}/opt/busybox:from-record`, '--plain-http', '--cache-dir', cacheDir, '--json', '--prioritized-from', record])
    t.equal(again.code, 0, 'exits 0', { stderr: again.stderr })
    t.notMatch(again.stderr, /workload/, 'no workload ran')
    t.equal((JSON.parse(again.stdout) as { digest: string }).digest, out.digest, 'same image as the recorded run')
    // A plain list of paths applies to every layer (a layer without the file ignores it).
    const plain = join(dir, 'plain.txt')
    await writeFile(plain, '/etc/hostname-ish\n/bin/busybox\n')
    const p = await runCommand('convert', [src, `${reg.host}/opt/busybox:plain`, '--plain-http', '--cache-dir', cacheDir, '--json', '--prioritized-from', plain])
    t.equal(p.code, 0, 'exits 0', { stderr: p.stderr })
    const pin = new RegistryInput(client, parseReference(`${reg.host}/opt/busybox:plain`))
    const pimg = await readImage(pin)
    t.same((await prefetchOrder(pin, pimg.manifest.layers[0] as never)).files, ['bin/busybox'])
    t.same((await prefetchOrder(pin, pimg.manifest.layers[1] as never)).files, ['etc/hostname-ish'])
    t.notMatch(p.stderr, /warning/, 'paths present in some layer are not warned about')
  })

  await t.test('the period bounds the run', async (t) => {
    const slow = await runCommand('optimize', [src, `${reg.host}/opt/busybox:slow`, '--plain-http', '--cache-dir', cacheDir, '--period', '1',
      '--state-dir', join(dir, 'state2'), '--', '/bin/busybox', 'sh', '-c', 'cat /etc/hostname-ish; exec /bin/busybox sleep 600'])
    t.equal(slow.code, 0, 'exits 0', { stderr: slow.stderr })
    t.match(slow.stderr, /workload stopped after 1 s/)
    t.same((await listMounts()).filter((m) => m.mountpoint.startsWith(dir)), [], 'nothing left mounted')
  })
})
