/**
 * External TOC (the reference's `--estargz-external-toc` layout): the layer blob ends in the
 * 46-byte STARGZEXTERNALTOC footer and holds no TOC; the TOC is a layer of the image
 * `<tag>-esgztoc` annotated with the eStargz layer's digest.
 * - blob level: our writer's blob alone is a valid tar.gz of the whole tree; with its TOC it reads
 *   byte-exact; a missing, failing or forged TOC is a typed error that says why;
 * - daemon: an image whose TOC is in a `-esgztoc` image runs lazily under containerd; the same
 *   layer without a TOC image falls back to a normal pull, with the reason logged, and runs.
 */
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { FileRangeSource } from '../../src/estargz/file-source.js'
import { EXTERNAL_TOC_LAYER_DIGEST_ANNOTATION } from '../../src/estargz/external-toc.js'
import { TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION } from '../../src/estargz/types.js'
import { convertFile } from '../../harness/convert.js'
import { REPO, runStargz } from '../../harness/cli.js'
import { tempDir } from '../../harness/tree.js'
import { mountsUnder, startContainerd } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { buildImage, sha256, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { ctrOrThrow, daemonScratch } from '../../harness/stargzd.js'

t.setTimeout(600_000)

t.test('external TOC at the blob level', async (t) => {
  const dir = await tempDir(t, 'ext-toc-')
  const input = join(REPO, 'test/fixtures/ctr-remote/tree.input.tar.gz')
  const blobPath = join(dir, 'tree.esgz')
  const r = await convertFile(input, blobPath, { externalToc: true, chunkSize: 1 << 20 })
  const toc = r.externalToc
  if (!toc) { t.fail('no external TOC returned'); return }
  const blob = await readFile(blobPath)
  t.equal(blob.subarray(-46).toString('latin1', 16, 33), 'STARGZEXTERNALTOC', 'external-TOC footer')
  const plain = execFileSync('gzip', ['-dc'], { input: blob, maxBuffer: 64 << 20 })
  t.equal(sha256(plain), r.diffID, 'the blob alone is a valid tar.gz (diffID = sha256 of gunzip)')
  const want = join(dir, 'want')
  execFileSync('mkdir', [want])
  execFileSync('tar', ['--numeric-owner', '-xpf', '-', '-C', want], { input: plain })
  const srcList = execFileSync('sh', ['-c', `gzip -dc "$0" | tar -tf - | sort`, input], { encoding: 'utf8' })
  const blobList = execFileSync('tar', ['-tf', '-'], { input: plain, encoding: 'utf8' }).split('\n').filter((l) => l !== '' && !l.includes('landmark')).sort().join('\n') + '\n'
  t.equal(blobList, srcList, 'the blob\'s tar lists every entry of the source')

  const src = await FileRangeSource.open(blobPath)
  t.teardown(() => src.close())
  const reader = await BlobReader.open(src, { externalToc: toc, tocDigest: r.tocDigest })
  t.equal(reader.footer.kind, 'external')
  let files = 0
  let bad = 0
  for (const e of reader.toc.entries) {
    if (e.type !== 'reg' || (e.size ?? 0) === 0 || e.name.includes('landmark')) continue
    files++
    if (!(await reader.readFile(e.name)).equals(await readFile(join(want, e.name)))) bad++
  }
  t.equal(bad, 0, `${files} files byte-exact with the external TOC`)
  t.same(await reader.verifyAll(), { files: files + 1, chunks: reader.index.payloads.length, bytes: reader.index.payloads.reduce((n, p) => n + p.chunkSize, 0), unverified: 0 }, 'verifyAll passes')

  await t.rejects(BlobReader.open(src), { code: 'ERR_FOOTER_INVALID', message: /TOC is external/ }, 'no TOC given: says the TOC is external')
  await t.rejects(BlobReader.open(src, { externalToc: () => Promise.reject(new Error('registry says 404')) }), { code: 'ERR_UNAVAILABLE', message: /external.*404/ }, 'unreachable TOC: says why')
  const forged = gzipSync(Buffer.concat([Buffer.from(toc)]))
  await t.rejects(BlobReader.open(src, { externalToc: forged, tocDigest: r.tocDigest }), { code: 'ERR_TOC_INVALID' }, 'a blob that is not a TOC member is refused')
  const other = await convertFile(join(REPO, 'test/fixtures/ctr-remote/legacy.input.tar.gz'), join(dir, 'other.esgz'), { externalToc: true })
  await t.rejects(BlobReader.open(src, { externalToc: other.externalToc as Buffer, tocDigest: r.tocDigest }), { code: 'ERR_TOC_DIGEST_MISMATCH' }, 'another layer\'s TOC fails the toc.digest check')

  await writeFile(join(dir, 'tree.toc'), toc)
  const ver = await runStargz(['verify', blobPath, '--external-toc', join(dir, 'tree.toc'), '--toc-digest', r.tocDigest])
  t.equal(ver.code, 0, `stargz verify --external-toc: ${ver.stderr}`)
  t.match(JSON.parse(ver.stdout.toString()), { footer: 'external', tocDigestVerified: true, unverifiedChunks: 0 })
  const cl = await runStargz(['convert-layer', input, join(dir, 'cli.esgz'), '--external-toc', join(dir, 'cli.toc')])
  t.equal(cl.code, 0, `stargz convert-layer --external-toc: ${cl.stderr}`)
  const cat = await runStargz(['cat', join(dir, 'cli.esgz'), 'big/big.bin', '--external-toc', join(dir, 'cli.toc')])
  t.ok(cat.code === 0 && cat.stdout.equals(await readFile(join(want, 'big/big.bin'))), 'stargz cat --external-toc of a convert-layer --external-toc blob is byte-exact')
})

t.test('external TOC under containerd: lazy with the -esgztoc image, fallback without it', async (t) => {
  const { dir, root, start, sock } = await daemonScratch(t, 'sgd-ext-')
  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const proxy = await startFaultProxy(registry.url)
  t.teardown(() => proxy.close())

  // `stargz convert --external-toc` from a plain gzip image: the image, plus `<tag>-esgztoc`.
  const rootfs = execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim()
  const rootTar = await readFile(rootfs)
  await writeOciLayout(join(dir, 'src'), 'v1', [buildImage({ layers: [{ data: gzipSync(rootTar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(rootTar) }] })])
  await skopeoPush(join(dir, 'src'), 'v1', `${registry.host}/ext/src:v1`)
  const cv = await runStargz(['convert', `${registry.host}/ext/src:v1`, `${registry.host}/ext/busybox:v1`, '--external-toc', '--plain-http', '--cache-dir', join(dir, 'cache'), '--json'], { timeoutMs: 300_000 })
  t.equal(cv.code, 0, `stargz convert --external-toc: ${cv.stderr}`)
  const get = async (path: string): Promise<Buffer> => {
    const r = await fetch(`${registry.url}/v2/ext/busybox/${path}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } })
    if (!r.ok) throw new Error(`GET ${path}: ${r.status}`)
    return Buffer.from(await r.arrayBuffer())
  }
  type M = { layers: Array<{ digest: string; annotations?: Record<string, string> }> }
  const man = JSON.parse((await get('manifests/v1')).toString()) as M
  const layerDigest = man.layers[0]?.digest ?? ''
  const blob = await get(`blobs/${layerDigest}`)
  t.equal(blob.subarray(-46).toString('latin1', 16, 33), 'STARGZEXTERNALTOC', 'the converted layer has the external-TOC footer')
  const listing = execFileSync('tar', ['-tzf', '-'], { input: blob, maxBuffer: 64 << 20, encoding: 'utf8' })
  t.match(listing, /bin\/busybox/, 'the blob alone is a valid tar.gz (tar -tz lists the rootfs)')
  t.notMatch(listing, /stargz\.index\.json/, 'and holds no TOC')
  const tocMan = JSON.parse((await get('manifests/v1-esgztoc')).toString()) as M
  const tocLayer = tocMan.layers.find((l) => l.annotations?.[EXTERNAL_TOC_LAYER_DIGEST_ANNOTATION] === layerDigest)
  t.ok(tocLayer, 'the -esgztoc image names the layer')
  if (tocLayer) {
    const tocJson = execFileSync('sh', ['-c', 'gzip -dc | tar -xOf - stargz.index.json'], { input: await get(`blobs/${tocLayer.digest}`) })
    t.equal(sha256(tocJson), man.layers[0]?.annotations?.[TOC_DIGEST_ANNOTATION], 'its TOC hashes to the layer\'s toc.digest annotation')
  }

  // `stargz mount` (no containerd) finds the TOC image too.
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const m = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'mount', `${registry.host}/ext/busybox:v1`, mnt, '--plain-http', '--state-dir', join(dir, 'mstate'), '--hosts-dir', join(dir, 'certs.d'), '--no-background-fetch'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let mlog = ''
  m.stdout.on('data', (b: Buffer) => { mlog += b.toString() })
  m.stderr.on('data', (b: Buffer) => { mlog += b.toString() })
  const mExit = new Promise<number | null>((resolve) => m.on('exit', (c) => resolve(c)))
  t.teardown(async () => { if (m.exitCode === null) { m.kill('SIGKILL'); await mExit } })
  for (let i = 0; i < 600 && !mlog.includes('"msg":"mounted"') && m.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100))
  t.match(mlog, /"msg":"mounted"/, 'stargz mount of the external-TOC image is up', { log: mlog.slice(-2000) })
  if (mlog.includes('"msg":"mounted"')) {
    t.ok((await readFile(join(mnt, 'bin/busybox'))).equals(await readFile('/bin/busybox')), 'bin/busybox through the mount is byte-exact')
  }
  m.kill('SIGTERM')
  t.equal(await mExit, 0, 'stargz mount exits 0')
  t.same(await mountsUnder(mnt), [], 'nothing left mounted')

  // Another layer (one more file, so another diffID: containerd would reuse the first snapshot)
  // with no TOC image at all.
  const rootfs2 = join(dir, 'rootfs2.tar')
  await copyFile(rootfs, rootfs2)
  await writeFile(join(dir, 'note.txt'), 'no TOC image for this one\n')
  execFileSync('tar', ['--owner=0', '--group=0', '-rf', rootfs2, '-C', dir, 'note.txt'])
  const conv2 = await convertFile(rootfs2, join(dir, 'bb2.esgz'), { externalToc: true })
  const blob2 = await readFile(join(dir, 'bb2.esgz'))
  await writeOciLayout(join(dir, 'img2'), 'notoc', [buildImage({ layers: [{ data: blob2, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv2.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv2.tocDigest, [UNCOMPRESSED_SIZE_ANNOTATION]: String(conv2.uncompressedSize) } }] })])
  await skopeoPush(join(dir, 'img2'), 'notoc', `${registry.host}/ext/busybox:notoc`)

  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'no_background_fetch = true\n')
  const sgd = await start(['--config', cfg, '--log-level', 'debug', '--hosts-dir', join(dir, 'certs.d')])
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const ctr = ctrOrThrow(ctrd, () => sgd.raw.join('\n'))

  const ref = `${proxy.host}/ext/busybox:v1`
  proxy.clearLog()
  const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', ref])
  t.equal(rp.code, 0, `rpull: ${rp.stderr}`)
  t.ok(sgd.logs.some((l) => l.msg === 'remote-snapshot-prepared'), 'remote snapshot prepared with the external TOC', { fallback: sgd.logs.filter((l) => l.msg === 'remote-snapshot-fallback') })
  const out = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 'ext1', '/bin/busybox', 'echo', 'hello external'])
  t.match(out, /^hello external$/m, 'runs lazily')
  t.ok(proxy.log.some((r) => r.method === 'GET' && r.path.includes('/manifests/v1-esgztoc')), 'the TOC image was resolved')
  t.notOk(proxy.log.some((r) => r.method === 'GET' && r.path.endsWith(`/blobs/${layerDigest}`) && r.range === undefined), 'the layer was read in ranges only')
  t.ok((await mountsUnder(root)).length > 0, 'a FUSE layer mount exists')

  const nref = `${proxy.host}/ext/busybox:notoc`
  const rp2 = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', nref])
  t.equal(rp2.code, 0, `rpull without a TOC image: ${rp2.stderr}`)
  const fb = sgd.logs.find((l) => l.msg === 'remote-snapshot-fallback')
  t.ok(fb, 'fell back to a normal pull')
  t.match(JSON.stringify(fb), /external|esgztoc/i, 'the fallback names the missing external TOC')
  const out2 = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), nref, 'ext2', '/bin/busybox', 'echo', 'hello fallback'])
  t.match(out2, /hello fallback/, 'the blob alone runs through the normal pull')

  const r = await sgd.close()
  t.equal(r.code, 0, 'SIGTERM exits 0')
})
