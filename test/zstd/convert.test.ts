/**
 * `stargz convert --zstdchunked`, registry to registry (real docker-registry), checked against the
 * format and against real consumers:
 * - the manifest: OCI zstd media type, toc.digest / uncompressed-size / zstd-chunked annotations
 *   that agree with the blob, a config diffID equal to sha256 of `zstd -dc` of the blob;
 * - containerd's normal pull (overlayfs snapshotter, its own zstd unpack) runs busybox, and the
 *   unpacked tree equals `tar -x` of the source layer;
 * - the reference's converter (`ctr-remote image convert --estargz --oci`) takes our image as its
 *   input, i.e. its zstd reader accepts the blob;
 * - our own daemon mounts it lazily is covered by daemon.test.ts.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startContainerd, mountsUnder } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, sha256, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { REPO, runStargz } from '../../harness/cli.js'
import { snapshotTree, tempDir } from '../../harness/tree.js'
import { parseZstdFooter } from '../../src/estargz/zstd-format.js'

t.setTimeout(600_000)

interface Manifest { mediaType: string; config: { digest: string }; layers: Array<{ mediaType: string; digest: string; size: number; annotations?: Record<string, string> }> }

t.test('stargz convert --zstdchunked: valid zstd:chunked that containerd and ctr-remote accept', async (t) => {
  const dir = await tempDir(t, 'zstd-convert-')
  const reg = await startRegistry()
  t.teardown(() => reg.close())

  // busybox rootfs plus a 9 MiB file, so there are several 4 MiB chunks.
  const rootfs = join(dir, 'rootfs.tar')
  await copyFile(execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim(), rootfs)
  await mkdir(join(dir, 'extra/data'), { recursive: true })
  const big = Buffer.alloc(9 << 20)
  for (let i = 0; i < big.length; i += 32) createHash('sha256').update(String(i)).digest().copy(big, i)
  await writeFile(join(dir, 'extra/data/big.bin'), big)
  execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '--mtime=@1700000000', '-rf', rootfs, '-C', join(dir, 'extra'), 'data'])
  const tar = await readFile(rootfs)
  const gz = execFileSync('gzip', ['-n', '-c', rootfs], { maxBuffer: 64 << 20 })
  await writeOciLayout(join(dir, 'src'), 'v1', [buildImage({ layers: [{ data: gz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar) }] })])
  await skopeoPush(join(dir, 'src'), 'v1', `${reg.host}/zc/busybox:v1`)

  const dst = `${reg.host}/zc/busybox:zstd`
  const conv = await runStargz(['convert', `${reg.host}/zc/busybox:v1`, dst, '--zstdchunked', '--plain-http', '--cache-dir', join(dir, 'cache'), '--json'], { timeoutMs: 300_000 })
  t.equal(conv.code, 0, `stargz convert --zstdchunked: ${conv.stderr}`)

  const get = async (path: string, accept?: string): Promise<Buffer> => {
    const r = await fetch(`${reg.url}/v2/zc/busybox/${path}`, accept ? { headers: { accept } } : {})
    if (!r.ok) throw new Error(`GET ${path}: ${r.status}`)
    return Buffer.from(await r.arrayBuffer())
  }
  const manifest = JSON.parse((await get('manifests/zstd', 'application/vnd.oci.image.manifest.v1+json')).toString()) as Manifest
  t.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json', 'an OCI manifest')
  const layer = manifest.layers[0]
  if (!layer) { t.fail('no layer'); return }
  t.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd', 'zstd layer media type')
  const blob = await get(`blobs/${layer.digest}`)
  t.equal(sha256(blob), layer.digest)
  const plain = execFileSync('zstd', ['-dc'], { input: blob, maxBuffer: 64 << 20 })
  const a = layer.annotations ?? {}
  t.equal(a['io.containers.estargz.uncompressed-size'], String(plain.length), 'uncompressed-size = zstd -dc length')
  const config = JSON.parse((await get(`blobs/${manifest.config.digest}`)).toString()) as { rootfs: { diff_ids: string[] } }
  t.equal(config.rootfs.diff_ids[0], sha256(plain), 'config diffID = sha256 of zstd -dc')
  const f = parseZstdFooter(blob.subarray(blob.length - 48), blob.length)
  t.equal(a['io.containers.zstd-chunked.manifest-position'], `${f.tocOffset}:${f.tocLength}:${f.tocRawSize}:1`, 'manifest-position names the TOC frame')
  const frame = blob.subarray(f.tocOffset, f.tocOffset + f.tocLength)
  t.equal(a['io.containers.zstd-chunked.manifest-checksum'], sha256(frame), 'manifest-checksum = sha256 of the compressed TOC')
  const tocJson = execFileSync('zstd', ['-dc'], { input: frame })
  t.equal(a['containerd.io/snapshot/stargz/toc.digest'], sha256(tocJson), 'toc.digest = sha256 of the TOC JSON')
  const toc = JSON.parse(tocJson.toString()) as { entries: Array<{ name: string; type: string }> }
  t.ok(toc.entries.filter((e) => e.name === 'data/big.bin').length >= 3, 'big.bin is chunked')

  // The tar inside is the source's tree: what `tar -x` of the source gives, as containerd unpacks it.
  const ctrd = await startContainerd()
  t.teardown(() => ctrd.close())
  const pull = await ctrd.ctr(['image', 'pull', '--plain-http', dst])
  t.equal(pull.code, 0, `ctr image pull (overlayfs, containerd's own unpack): ${pull.stderr}`)
  const run = await ctrd.ctr(['run', '--rm', ...ctrd.runArgs(), dst, 'zc1', '/bin/busybox', 'echo', 'hello from zstd'])
  t.match(run.stdout, /hello from zstd/, `runs under overlayfs: ${run.stderr}`)
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const m = await ctrd.ctr(['images', 'mount', dst, mnt])
  t.equal(m.code, 0, `ctr images mount: ${m.stderr}`)
  t.teardown(async () => { await ctrd.ctr(['images', 'unmount', mnt]) })
  const want = join(dir, 'want')
  await mkdir(want)
  execFileSync('tar', ['--numeric-owner', '--xattrs', "--xattrs-include=*", '-xpf', rootfs, '-C', want])
  // The landmark file is part of the format (the reference writes it too), not of the tree.
  const got = await snapshotTree(mnt, ['.', '.no.prefetch.landmark'])
  const expected = await snapshotTree(want, ['.'])
  let mismatches = 0
  for (const k of new Set([...Object.keys(got), ...Object.keys(expected)])) {
    if (JSON.stringify(got[k]) !== JSON.stringify(expected[k])) { if (mismatches++ < 5) t.same(got[k], expected[k], k) }
  }
  t.equal(mismatches, 0, `containerd's unpack of our blob equals tar -x of the source (${Object.keys(expected).length} paths)`)
  await ctrd.ctr(['images', 'unmount', mnt])
  t.same(await mountsUnder(mnt), [], 'unmounted')

  // The reference's converter reads our zstd layer as its input.
  const back = `${reg.host}/zc/busybox:back-to-estargz`
  const rc = await ctrd.ctrRemote(['image', 'convert', '--oci', '--estargz', dst, back])
  t.equal(rc.code, 0, `ctr-remote image convert of our zstd:chunked image: ${rc.stderr}`)
})
