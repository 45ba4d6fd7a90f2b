/**
 * The soak's images, each one eStargz layer converted by our writer from a cached rootfs tar plus
 * generated files, pushed to the test registry. For every file a workload checks, the sha256 of
 * its bytes as they are in the source tar, so a workload's output can be compared byte for byte.
 *
 *   busybox   the busybox-static rootfs; the workload runs `echo`
 *   bigfile   + /data/big-<i>.bin, random, several chunks each; the workload sha256sums them
 *   walker    + /tree/dNN/fNNN, many small files; the workload stats everything and hashes /tree
 *   python    the Debian python3 rootfs; the workload hashes the stdlib's top-level .py files
 *   corrupt   + /data/corrupt.bin; one bit of the blob in the registry's storage is flipped inside
 *             that file's compressed bytes, so reading it must fail (EIO), never return bytes
 */
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { REPO } from '../cli.js'
import { convertFile, tocOf } from '../convert.js'
import { buildImage, sha256, skopeoPush, writeOciLayout } from '../image.js'
import { readTar } from '../../src/tar/reader.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'

export type ImageName = 'busybox' | 'bigfile' | 'walker' | 'python' | 'corrupt'

export interface SoakImage {
  name: ImageName
  /** Reference without the registry host: "soak/<name>:esgz". */
  repoTag: string
  layerDigest: string
  layerBytes: number
  /** Path in the container → sha256 hex of the source bytes. */
  files: Map<string, string>
  /** Path → size in bytes, for the bytes-verified figure. */
  sizes: Map<string, number>
}

export interface ImageSetOptions {
  /** Work dir (kept until the caller removes it). */
  dir: string
  /** "127.0.0.1:PORT" of the registry to push to (not the proxy). */
  registryHost: string
  /** Its storage dir (the bit flip goes there). */
  registryDir: string
  names: ImageName[]
  /** Small chunks, so files span many chunks and a small cache evicts all the time. */
  chunkSize?: number
  /** Scale of the generated content (1 = the bench's sizes). */
  scale?: number
}

const hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

function fixture(script: string): string {
  return execFileSync('bash', [join(REPO, 'scripts/fixtures', script)], { encoding: 'utf8' }).trim()
}

/** Generated files to add under `root` (paths relative to it), with their hashes. */
async function addFiles(root: string, files: { path: string; data: Buffer }[], hashes: Map<string, string>, sizes: Map<string, number>): Promise<void> {
  for (const f of files) {
    const p = join(root, f.path)
    await mkdir(join(p, '..'), { recursive: true })
    await writeFile(p, f.data)
    hashes.set('/' + f.path, hex(f.data))
    sizes.set('/' + f.path, f.data.length)
  }
}

/** sha256 of the python stdlib's top-level modules, read from the source tar. */
async function pythonStdlibHashes(tar: string, sizes: Map<string, number>): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for await (const e of readTar(createReadStream(tar))) {
    const name = e.header.name.replace(/^\.?\//, '')
    const m = /^usr\/lib\/python3\.\d+\/[^/]+\.py$/.test(name) && e.header.typeflag === '0'
    const h = createHash('sha256')
    for await (const c of e.body) if (m) h.update(c)
    if (m) { out.set('/' + name, h.digest('hex')); sizes.set('/' + name, e.header.size) }
  }
  return out
}

export async function buildSoakImages(opts: ImageSetOptions): Promise<SoakImage[]> {
  const scale = opts.scale ?? 1
  const busyboxTar = fixture('busybox-rootfs.sh')
  const out: SoakImage[] = []
  for (const name of opts.names) {
    const work = join(opts.dir, `img-${name}`)
    await mkdir(work, { recursive: true })
    let rootfs = join(work, 'rootfs.tar')
    const files = new Map<string, string>()
    const sizes = new Map<string, number>()
    if (name === 'python') {
      rootfs = fixture('python-rootfs.sh')
      for (const [k, v] of await pythonStdlibHashes(rootfs, sizes)) files.set(k, v)
    } else {
      await copyFile(busyboxTar, rootfs)
      const extra = join(work, 'extra')
      const gen: { path: string; data: Buffer }[] = []
      if (name === 'bigfile') for (let i = 0; i < 3; i++) gen.push({ path: `data/big-${i}.bin`, data: randomBytes(Math.round((3 + i) * scale * (1 << 20))) })
      if (name === 'walker') {
        for (let d = 0; d < Math.max(2, Math.round(20 * scale)); d++) {
          for (let f = 0; f < 50; f++) gen.push({ path: `tree/d${String(d).padStart(2, '0')}/f${String(f).padStart(3, '0')}`, data: randomBytes(200 + ((d * 50 + f) * 37) % 6000) })
        }
      }
      if (name === 'corrupt') gen.push({ path: 'data/corrupt.bin', data: randomBytes(2 << 20) })
      if (gen.length > 0) {
        await addFiles(extra, gen, files, sizes)
        execFileSync('tar', ['-rf', rootfs, '-C', extra, ...new Set(gen.map((g) => g.path.split('/')[0] as string))])
        await rm(extra, { recursive: true, force: true })
      }
    }
    const esgzPath = join(work, 'layer.estargz')
    const conv = await convertFile(rootfs, esgzPath, { chunkSize: opts.chunkSize ?? 256 << 10 })
    const esgz = await readFile(esgzPath)
    const image = buildImage({ layers: [{ data: esgz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } }] })
    await writeOciLayout(join(work, 'oci'), 'esgz', [image])
    const repoTag = `soak/${name}:esgz`
    await skopeoPush(join(work, 'oci'), 'esgz', `${opts.registryHost}/${repoTag}`)
    const layerDigest = sha256(esgz)
    if (name === 'corrupt') await flipBitInFile(opts.registryDir, layerDigest, esgz, 'data/corrupt.bin')
    await rm(esgzPath, { force: true })
    out.push({ name, repoTag, layerDigest, layerBytes: esgz.length, files, sizes })
  }
  return out
}

/**
 * Flips one bit of the stored blob, a third of the way into the compressed bytes of `entry`'s
 * first chunk, where the TOC says they are. The registry serves stored bytes as they are.
 */
async function flipBitInFile(registryDir: string, digest: string, blob: Buffer, entry: string): Promise<void> {
  const { toc } = tocOf(blob)
  const chunks = toc.entries.filter((e) => e.name === entry && (e.type === 'reg' || e.type === 'chunk'))
  const first = chunks[0]
  const second = chunks[1]
  if (!first || first.offset === undefined) throw new Error(`soak: ${entry} not in the TOC of ${digest}`)
  const end = second?.offset ?? toc.entries.find((e) => (e.offset ?? 0) > (first.offset as number))?.offset ?? blob.length - 51
  const at = first.offset + Math.floor((end - first.offset) / 3)
  const h = digest.slice('sha256:'.length)
  const p = join(registryDir, 'docker/registry/v2/blobs/sha256', h.slice(0, 2), h, 'data')
  const fh = await open(p, 'r+')
  try {
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, at)
    b[0] = (b[0] as number) ^ 0x10
    await fh.write(b, 0, 1, at)
  } finally {
    await fh.close()
  }
}
