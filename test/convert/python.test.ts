/** The python3 image (a ~175 MB debootstrap rootfs): convert it, then run python3 with containerd's overlayfs snapshotter. */
import t from 'tap'
import { join } from 'node:path'
import { RegistryInput } from '../../src/convert/registry-io.js'
import { RegistryClient } from '../../src/registry/client.js'
import { parseReference } from '../../src/registry/reference.js'
import { buildImage, writeOciLayout } from '../../harness/image.js'
import { startRegistry } from '../../harness/registry.js'
import { containerd, ctrOk, gzipFileLayer, pythonRootfs, readImage, runCommand, tempDir, verifyLayer } from '../../harness/convert-fixtures.js'

t.setTimeout(1_800_000)

t.test('convert the python3 image and run it with containerd', async (t) => {
  const dir = await tempDir(t, 'stargz-convert-py-')
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const client = new RegistryClient({ plainHttp: true })
  t.teardown(() => client.close())
  const layout = join(dir, 'layout')
  await writeOciLayout(layout, 'py', [buildImage({ layers: [await gzipFileLayer(await pythonRootfs())] })])
  const dst = `${reg.host}/out/python:esgz`
  const r = await runCommand('convert', [`oci:${layout}:py`, dst, '--plain-http', '--cache-dir', join(dir, 'cache'), '--json'])
  t.equal(r.code, 0, 'convert exits 0', { stderr: r.stderr })
  const input = new RegistryInput(client, parseReference(dst))
  const img = await readImage(input)
  const reader = await verifyLayer(input, img.manifest.layers[0] as never)
  t.ok(reader.lookup('usr/bin/python3'), 'python3 is in the TOC')

  const c = await containerd(t)
  await ctrOk(c, ['image', 'pull', '--plain-http', dst])
  const out = await ctrOk(c, ['run', '--rm', ...c.runArgs(), dst, 'py1', 'python3', '-c', 'print("hello")'])
  t.equal(out, 'hello\n', 'python3 ran from the converted image')
})
