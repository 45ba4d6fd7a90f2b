/**
 * Build an OCI image layout (image-spec v1.0: `oci-layout`, `index.json`, `blobs/sha256/…`) from
 * layer tars on disk, and push it to a registry with skopeo.
 *
 * Deterministic: the same tars, config and encoder give the same bytes and digests. Nothing reads
 * the clock (`created` is fixed unless given), JSON keys are written in a fixed order, and the
 * gzip encoders write no name and no mtime (node:zlib writes mtime 0; `pigz -n` likewise; pigz's
 * output does not depend on its thread count).
 *
 * Layout written:
 *   DIR/oci-layout                 {"imageLayoutVersion":"1.0.0"}
 *   DIR/index.json                 one manifest descriptor, annotated org.opencontainers.image.ref.name=TAG
 *   DIR/blobs/sha256/<manifest>    mediaType application/vnd.oci.image.manifest.v1+json
 *   DIR/blobs/sha256/<config>      rootfs.diff_ids = sha256 of each *uncompressed* tar, history, config
 *   DIR/blobs/sha256/<layer>…      the encoded layers; digest and size are of the encoded bytes
 */
import { execFile, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough, Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { promisify } from 'node:util'
import { constants as zc, createGzip } from 'node:zlib'

const execFileP = promisify(execFile)

export const MEDIA_TYPE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const MEDIA_TYPE_INDEX = 'application/vnd.oci.image.index.v1+json'
export const MEDIA_TYPE_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const MEDIA_TYPE_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
const DEFAULT_CREATED = '2023-01-01T00:00:00Z'

/** Turns an uncompressed layer tar into the blob that goes into the image. */
export interface LayerEncoder {
  /** Stable name of the encoding and its settings, for cache keys. */
  readonly id: string
  readonly mediaType: string
  /** Read `tarPath`, write the encoded blob to `outPath`; may add descriptor annotations. */
  encode(tarPath: string, outPath: string): Promise<{ annotations?: Record<string, string> }>
}

export interface LayerInput {
  /** An uncompressed tar. */
  tar: string
  /** The history entry's created_by; default "stargzd bench: <tar's base name>". */
  createdBy?: string
  comment?: string
}

/** The runtime part of the image config (names as in the OCI config's "config" object). */
export interface RuntimeConfig {
  Env?: string[]
  Entrypoint?: string[]
  Cmd?: string[]
  WorkingDir?: string
  User?: string
  Labels?: Record<string, string>
}

export interface BuildOptions {
  /** The layout directory; created, and must not hold another image. */
  dir: string
  tag: string
  layers: LayerInput[]
  config: RuntimeConfig
  /** RFC 3339; default 2023-01-01T00:00:00Z. */
  created?: string
  /** GOARCH spelling; default from process.arch. */
  architecture?: string
  encoder?: LayerEncoder
  /** Called after each layer is encoded, e.g. for progress output. */
  onLayer?: (layer: BuiltLayer, index: number) => void
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
}

export interface BuiltLayer extends Descriptor {
  diffId: string
  uncompressedSize: number
}

export interface BuiltLayout {
  dir: string
  tag: string
  manifest: Descriptor
  config: Descriptor
  layers: BuiltLayer[]
}

function goArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }
  return map[process.arch] ?? process.arch
}

/** A pass-through that hashes and counts what flows by. */
class Digester extends Transform {
  readonly #hash = createHash('sha256')
  bytes = 0
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#hash.update(chunk)
    this.bytes += chunk.length
    cb(null, chunk)
  }
  digest(): string {
    return 'sha256:' + this.#hash.digest('hex')
  }
}

async function hasPigz(): Promise<boolean> {
  try {
    await execFileP('pigz', ['--version'])
    return true
  } catch {
    return false
  }
}

/**
 * gzip, by pigz when it is installed (both cores: ~2× node:zlib on this machine) else node:zlib.
 * The two give different (each deterministic) bytes, so the id names the one used.
 */
export async function gzipEncoder(opts: { level?: number; pigz?: boolean } = {}): Promise<LayerEncoder> {
  const level = opts.level ?? 6
  const usePigz = opts.pigz ?? (await hasPigz())
  if (usePigz) {
    return {
      id: `gzip-pigz-${level}`,
      mediaType: MEDIA_TYPE_LAYER_GZIP,
      encode: async (tarPath, outPath) => {
        const child = spawn('pigz', ['-n', `-${level}`, '-c'], { stdio: ['pipe', 'pipe', 'pipe'] })
        let stderr = ''
        child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
        const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
        await Promise.all([
          pipeline(createReadStream(tarPath), child.stdin),
          pipeline(child.stdout, createWriteStream(outPath)),
        ])
        const code = await exited
        if (code !== 0) throw new Error(`pigz exited with ${code} on ${tarPath}: ${stderr.trim()}`)
        return {}
      },
    }
  }
  return {
    id: `gzip-zlib-${level}`,
    mediaType: MEDIA_TYPE_LAYER_GZIP,
    encode: async (tarPath, outPath) => {
      await pipeline(createReadStream(tarPath), createGzip({ level, memLevel: 8, strategy: zc.Z_DEFAULT_STRATEGY }), createWriteStream(outPath))
      return {}
    },
  }
}

async function digestFile(path: string): Promise<{ digest: string; size: number }> {
  const d = new Digester()
  await pipeline(createReadStream(path), d, new PassThrough().resume())
  return { digest: d.digest(), size: d.bytes }
}

/** Write `data` as a blob; returns its descriptor fields. */
async function putBlob(dir: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const hex = createHash('sha256').update(data).digest('hex')
  await writeFile(join(dir, 'blobs', 'sha256', hex), data)
  return { digest: `sha256:${hex}`, size: data.length }
}

/** The same keys in one fixed order whatever order the caller wrote them in. */
function runtimeConfig(c: RuntimeConfig): RuntimeConfig {
  const out: RuntimeConfig = {}
  if (c.User !== undefined) out.User = c.User
  if (c.Env !== undefined) out.Env = c.Env
  if (c.Entrypoint !== undefined) out.Entrypoint = c.Entrypoint
  if (c.Cmd !== undefined) out.Cmd = c.Cmd
  if (c.WorkingDir !== undefined) out.WorkingDir = c.WorkingDir
  if (c.Labels !== undefined) out.Labels = Object.fromEntries(Object.entries(c.Labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  return out
}

export async function buildOciLayout(opts: BuildOptions): Promise<BuiltLayout> {
  if (opts.layers.length === 0) throw new Error(`image ${opts.tag}: no layers`)
  const encoder = opts.encoder ?? (await gzipEncoder())
  const blobDir = join(opts.dir, 'blobs', 'sha256')
  await mkdir(blobDir, { recursive: true })

  const layers: BuiltLayer[] = []
  for (const [i, input] of opts.layers.entries()) {
    const tmp = join(blobDir, `.partial-${randomBytes(6).toString('hex')}`)
    try {
      // The tar is read twice (hash, then encode) rather than teed: an encoder that is an external
      // program or another module then needs nothing but a path, and the page cache serves the
      // second read.
      const [diff, encoded] = await Promise.all([
        digestFile(input.tar),
        encoder.encode(input.tar, tmp).then(async (r) => ({ ...r, ...(await digestFile(tmp)) })),
      ])
      await rename(tmp, join(blobDir, encoded.digest.slice('sha256:'.length)))
      const layer: BuiltLayer = {
        mediaType: encoder.mediaType,
        digest: encoded.digest,
        size: encoded.size,
        ...(encoded.annotations && Object.keys(encoded.annotations).length > 0 ? { annotations: encoded.annotations } : {}),
        diffId: diff.digest,
        uncompressedSize: diff.size,
      }
      layers.push(layer)
      opts.onLayer?.(layer, i)
    } finally {
      await rm(tmp, { force: true })
    }
  }

  const created = opts.created ?? DEFAULT_CREATED
  const base = (p: string): string => p.slice(p.lastIndexOf('/') + 1)
  const config = {
    created,
    architecture: opts.architecture ?? goArch(),
    os: 'linux',
    config: runtimeConfig(opts.config),
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: opts.layers.map((l) => ({
      created,
      created_by: l.createdBy ?? `stargzd bench: ${base(l.tar)}`,
      ...(l.comment !== undefined ? { comment: l.comment } : {}),
    })),
  }
  const configDesc: Descriptor = { mediaType: MEDIA_TYPE_CONFIG, ...(await putBlob(opts.dir, Buffer.from(JSON.stringify(config)))) }
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_MANIFEST,
    config: configDesc,
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, ...(l.annotations ? { annotations: l.annotations } : {}) })),
  }
  const manifestDesc: Descriptor = { mediaType: MEDIA_TYPE_MANIFEST, ...(await putBlob(opts.dir, Buffer.from(JSON.stringify(manifest)))) }
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_INDEX,
    manifests: [{ ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': opts.tag } }],
  }
  await writeFile(join(opts.dir, 'index.json'), JSON.stringify(index))
  await writeFile(join(opts.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  return { dir: opts.dir, tag: opts.tag, manifest: manifestDesc, config: configDesc, layers }
}

export interface PushOptions {
  /** Require TLS and verify certificates; default false (a bench registry on 127.0.0.1). */
  tlsVerify?: boolean
  /** skopeo --dest-creds user:password */
  creds?: string
}

/**
 * Push `oci:DIR:TAG` to `docker://DEST` (e.g. "127.0.0.1:5000/bench/python:1") with skopeo, keeping
 * the manifest byte for byte (--preserve-digests fails rather than convert it), so the pushed
 * image's digest is the layout's.
 */
export async function pushOciLayout(layout: { dir: string; tag: string }, dest: string, opts: PushOptions = {}): Promise<void> {
  const args = [
    '--insecure-policy', 'copy', '--quiet', '--preserve-digests',
    `--dest-tls-verify=${opts.tlsVerify === true}`,
    ...(opts.creds ? ['--dest-creds', opts.creds] : []),
    `oci:${layout.dir}:${layout.tag}`, `docker://${dest}`,
  ]
  try {
    await execFileP('skopeo', args, { maxBuffer: 16 * 1024 * 1024 })
  } catch (e) {
    const err = e as Error & { stderr?: string }
    throw new Error(`skopeo copy oci:${layout.dir}:${layout.tag} → docker://${dest} failed: ${(err.stderr ?? err.message).trim()}`, { cause: e })
  }
}

/** Total encoded and uncompressed sizes of a built image. */
export function layoutSizes(layout: BuiltLayout): { compressed: number; uncompressed: number } {
  let compressed = layout.config.size + layout.manifest.size
  let uncompressed = 0
  for (const l of layout.layers) {
    compressed += l.size
    uncompressed += l.uncompressedSize
  }
  return { compressed, uncompressed }
}

/** Exists only so callers can check a layout without reading it: true if DIR/index.json is there. */
export async function layoutExists(dir: string): Promise<boolean> {
  return stat(join(dir, 'index.json')).then(() => true, () => false)
}
