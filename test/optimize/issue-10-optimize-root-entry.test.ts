/**
 * Issue #10 §1: `stargz optimize` of an image the reference converter made from layers with a
 * "/" (and umoci's ".") root entry failed outright ("name is absolute"). It must now record the
 * workload's accesses on those layers and write an image whose layers our reader opens, with the
 * files the workload read before the prefetch landmark.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RegistryInput } from '../../src/convert/registry-io.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'
import { RegistryClient } from '../../src/registry/client.js'
import { parseReference } from '../../src/registry/reference.js'
import { startRegistry } from '../../harness/registry.js'
import { prefetchOrder, readImage, runCommand, tempDir } from '../../harness/convert-fixtures.js'
import { loadCorpus } from '../interop/corpus.js'

t.setTimeout(600_000)

t.test('optimize a ctr-remote image whose TOCs have "/" and "." root entries', async (t) => {
  const corpus = await loadCorpus()
  const base = corpus.entries.find((e) => e.name === 'busybox-abs')
  const top = corpus.entries.find((e) => e.name === 'umoci')
  if (!base || !top) throw new Error('corpus is missing busybox-abs or umoci')
  const dir = await tempDir(t, 'stargz-optimize-root-')
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const client = new RegistryClient({ plainHttp: true })
  t.teardown(() => client.close())
  const layers = await Promise.all([base, top].map(async (e) => ({
    data: await readFile(join(corpus.dir, e.blob)),
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    annotations: { [TOC_DIGEST_ANNOTATION]: e.tocDigest },
  })))
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/bin/sh'] }, rootfs: { type: 'layers', diff_ids: [base.diffID, top.diffID] } }))
  const src = `${reg.host}/interop/root-entry:ref`
  await client.pushImage(src, config, layers)

  const r = await runCommand('optimize', [src, `${reg.host}/interop/root-entry:opt`, '--plain-http', '--cache-dir', join(dir, 'cache'), '--json',
    '--state-dir', join(dir, 'state'), '--period', '60', '--', '/bin/busybox', 'cat', '/etc/hello.txt'])
  t.equal(r.code, 0, 'optimize exits 0', { stderr: r.stderr })
  t.notMatch(r.stderr, /name-absolute|name is absolute/)
  t.match(r.stderr, /hello from the interop corpus/, 'the workload ran on the lazily mounted layers')

  const input = new RegistryInput(client, parseReference(`${reg.host}/interop/root-entry:opt`))
  const out = await readImage(input)
  const [l0, l1] = out.manifest.layers
  const o0 = await prefetchOrder(input, l0 as never)
  const o1 = await prefetchOrder(input, l1 as never)
  t.equal(o0.landmark, 'prefetch')
  t.ok(o0.files.includes('bin/busybox'), `base layer: busybox before the landmark (${o0.files.join(', ')})`)
  t.equal(o1.landmark, 'prefetch')
  // umoci wrote data/hard-hello.txt first, so etc/hello.txt is the hardlink to it: the payload
  // that was read, and so prioritized, is the entry that holds it.
  t.same(o1.files, ['data/hard-hello.txt'], 'umoci layer: the payload the workload read (via the hardlink /etc/hello.txt)')
})
