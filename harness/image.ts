/**
 * Build small test images locally: tar layers written here, an OCI image layout on disk, and a
 * push to a test registry with skopeo (or with our own client, see RegistryClient.pushImage).
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import { writeFooter } from '../src/estargz/footer-writer.js'

const execFileP = promisify(execFile)

export interface TarFile { name: string; data?: Buffer; mode?: number; type?: 'file' | 'dir' }

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0'
}

/** A ustar archive of `files` (names up to 100 bytes), ending with two zero blocks. */
export function tarOf(files: TarFile[]): Buffer {
  const blocks: Buffer[] = []
  for (const f of files) {
    const isDir = f.type === 'dir'
    const data = isDir ? Buffer.alloc(0) : (f.data ?? Buffer.alloc(0))
    const h = Buffer.alloc(512)
    h.write(f.name, 0, 100, 'utf8')
    h.write(octal(f.mode ?? (isDir ? 0o755 : 0o644), 8), 100, 'latin1')
    h.write(octal(0, 8), 108, 'latin1')
    h.write(octal(0, 8), 116, 'latin1')
    h.write(octal(data.length, 12), 124, 'latin1')
    h.write(octal(1_700_000_000, 12), 136, 'latin1')
    h.write('        ', 148, 'latin1')
    h.write(isDir ? '5' : '0', 156, 'latin1')
    h.write('ustar\0' + '00', 257, 'latin1')
    let sum = 0
    for (const b of h) sum += b
    h.write(octal(sum, 7) + ' ', 148, 'latin1')
    blocks.push(h, data)
    const pad = (512 - (data.length % 512)) % 512
    if (pad) blocks.push(Buffer.alloc(pad))
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

export function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

export interface LayerBlob { data: Buffer; mediaType: string; diffId: string; annotations?: Record<string, string> }

export function gzipLayer(files: TarFile[]): LayerBlob {
  const tar = tarOf(files)
  return { data: gzipSync(tar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar) }
}

/**
 * A gzip layer with an eStargz footer appended (TOC offset pointing at the footer's own start
 * minus nothing useful): enough for footer probes, not for TOC reads.
 */
export function footerOnlyEstargz(files: TarFile[]): LayerBlob {
  const l = gzipLayer(files)
  const data = Buffer.concat([l.data, writeFooter(l.data.length - 1)])
  return { ...l, data, annotations: { 'containerd.io/snapshot/stargz/toc.digest': sha256(Buffer.from('fake-toc')) } }
}

export interface ImageSpec {
  layers: LayerBlob[]
  os?: string
  architecture?: string
  variant?: string
}

export interface BuiltImage {
  manifest: Buffer
  manifestDigest: string
  config: Buffer
  configDigest: string
  layers: LayerBlob[]
  platform: { os: string; architecture: string; variant?: string }
}

export function buildImage(spec: ImageSpec): BuiltImage {
  const platform: BuiltImage['platform'] = { os: spec.os ?? 'linux', architecture: spec.architecture ?? 'amd64' }
  if (spec.variant) platform.variant = spec.variant
  const config = Buffer.from(JSON.stringify({
    ...platform,
    created: '2024-01-01T00:00:00Z',
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: spec.layers.map((l) => l.diffId) },
  }))
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: spec.layers.map((l) => ({ mediaType: l.mediaType, digest: sha256(l.data), size: l.data.length, ...(l.annotations ? { annotations: l.annotations } : {}) })),
  }))
  return { manifest, manifestDigest: sha256(manifest), config, configDigest: sha256(config), layers: spec.layers, platform }
}

export function indexOf(images: BuiltImage[]): Buffer {
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: images.map((i) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: i.manifestDigest, size: i.manifest.length, platform: i.platform })),
  }))
}

async function putBlob(dir: string, data: Buffer): Promise<string> {
  const d = sha256(data)
  await writeFile(join(dir, 'blobs', 'sha256', d.slice(7)), data)
  return d
}

/**
 * Write an OCI image layout holding one image, or an index over several, tagged `tag`.
 * Returns the digest of what the tag points at.
 */
export async function writeOciLayout(dir: string, tag: string, images: BuiltImage[]): Promise<string> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  for (const img of images) {
    await putBlob(dir, img.config)
    for (const l of img.layers) await putBlob(dir, l.data)
    await putBlob(dir, img.manifest)
  }
  let top: { mediaType: string; digest: string; size: number }
  if (images.length === 1) {
    const img = images[0] as BuiltImage
    top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: img.manifestDigest, size: img.manifest.length }
  } else {
    const idx = indexOf(images)
    top = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: await putBlob(dir, idx), size: idx.length }
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }))
  return top.digest
}

export interface SkopeoOptions { creds?: { username: string; password: string }; tlsVerify?: boolean; certDir?: string }

/** `skopeo copy --all oci:DIR:TAG docker://DEST`, keeping digests. */
export async function skopeoPush(layoutDir: string, tag: string, dest: string, opts: SkopeoOptions = {}): Promise<void> {
  const args = ['--insecure-policy', 'copy', '--all', '--preserve-digests', '--quiet', `--dest-tls-verify=${opts.tlsVerify === true}`]
  if (opts.creds) args.push('--dest-creds', `${opts.creds.username}:${opts.creds.password}`)
  if (opts.certDir) args.push('--dest-cert-dir', opts.certDir)
  args.push(`oci:${layoutDir}:${tag}`, `docker://${dest}`)
  try {
    await execFileP('skopeo', args, { env: { ...process.env, HOME: layoutDir } })
  } catch (e) {
    const err = e as { stderr?: string; message: string }
    throw new Error(`skopeo copy to ${dest} failed: ${err.stderr ?? err.message}`)
  }
}
