/**
 * #10 §1 end to end: a reference-converted image (ctr-remote 0.12) whose TOCs have a "/" root
 * entry (busybox re-tarred `tar -P` style) and a "." one (umoci), rpulled by containerd through
 * stargzd and run. Before the fix both layers fell back to a full pull ("name is absolute");
 * now every layer must be mounted remotely and none may fall back.
 */
import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startContainerd } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { metricsAddress } from '../../harness/ports.js'
import { buildImage, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'
import { ctrOrThrow, daemonScratch } from '../../harness/stargzd.js'
import { loadCorpus } from './corpus.js'

t.setTimeout(900_000)

t.test('rpull + run of a ctr-remote image with "/" and "." root entries: every layer remote', async (t) => {
  const corpus = await loadCorpus()
  const pick = (name: string) => {
    const e = corpus.entries.find((x) => x.name === name)
    if (!e) throw new Error(`corpus has no ${name}`)
    return e
  }
  const base = pick('busybox-abs')
  const top = pick('umoci')
  t.equal(base.rootEntry, '/', 'the base layer TOC has a "/" root entry')
  t.equal(top.rootEntry, '.', 'the umoci layer TOC has a "." root entry')

  const { dir, start, sock } = await daemonScratch(t, 'sgd-interop-')
  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const layers = await Promise.all([base, top].map(async (e) => ({
    data: await readFile(join(corpus.dir, e.blob)),
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    diffId: e.diffID,
    annotations: { [TOC_DIGEST_ANNOTATION]: e.tocDigest },
  })))
  await writeOciLayout(join(dir, 'img'), 'ref', [buildImage({ layers })])
  const ref = `${registry.host}/interop/root-entry:ref`
  await skopeoPush(join(dir, 'img'), 'ref', ref)

  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'metrics_address = "127.0.0.1:0"\n')
  const sgd = await start(['--config', cfg, '--log-level', 'debug'])
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const ctr = ctrOrThrow(ctrd, () => sgd.raw.join('\n'))

  const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', ref])
  t.equal(rp.code, 0, `rpull: ${rp.stderr}`)
  const prepared = sgd.logs.filter((l) => l.msg === 'remote-snapshot-prepared')
  const fallbacks = sgd.logs.filter((l) => l.msg === 'remote-snapshot-fallback')
  t.same(fallbacks, [], 'no layer fell back to a full pull')
  t.same(new Set(prepared.map((l) => l.layer)), new Set([base.digest, top.digest]), 'both layers prepared as remote snapshots')

  const out = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 'interop1', '/bin/busybox', 'cat', '/etc/hello.txt', '/data/hard-hello.txt'])
  t.equal(out, 'hello from the interop corpus\n'.repeat(2), 'the container read both layers (hardlink included)')
  const ls = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 'interop2', '/bin/busybox', 'sha256sum', '/data/lines.bin'])
  const lines = await readFile(join(corpus.dir, top.extract, 'data/lines.bin'))
  const { createHash } = await import('node:crypto')
  t.match(ls, createHash('sha256').update(lines).digest('hex'), 'a 5-chunk file reads byte-exact inside the container')

  const metrics = await (await fetch(`http://${metricsAddress(sgd.logs)}/metrics`)).text()
  const mountedLayers = metrics.split('\n').filter((l) => l.startsWith('stargzd_mounted_layers')).reduce((n, l) => n + Number(l.split(' ').pop()), 0)
  t.equal(mountedLayers, 2, 'metrics: two lazy layers mounted')
  const fb = metrics.split('\n').filter((l) => l.startsWith('stargzd_remote_snapshot_fallbacks_total')).reduce((n, l) => n + Number(l.split(' ').pop()), 0)
  t.equal(fb, 0, 'metrics: no fallback')

  const r = await sgd.close()
  t.equal(r.code, 0, 'SIGTERM exits 0')

})
