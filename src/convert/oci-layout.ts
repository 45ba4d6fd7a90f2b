/**
 * OCI image layout (image-spec image-layout.md), as skopeo and containerd write it:
 *
 *   DIR/oci-layout          {"imageLayoutVersion": "1.0.0"}
 *   DIR/index.json          an image index; each entry's `org.opencontainers.image.ref.name`
 *                           annotation is its tag
 *   DIR/blobs/<alg>/<hex>   content-addressed blobs (layers, configs, manifests, indexes)
 */
import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidArgumentError, NotFoundError } from '../errors.js'
import type { RangeSource } from '../estargz/types.js'
import { ManifestError } from '../registry/errors.js'
import { parseDescriptor, parseManifest, sha256Digest, verifyDigest, type Descriptor } from '../registry/manifest.js'
import { OCI_INDEX } from '../registry/media-types.js'
import { fileStream } from './blob-stream.js'
import type { BlobPlacement, FetchedDocument, ImageInput, ImageOutput } from './image-io.js'
import { FileRangeSource } from '../estargz/file-source.js'

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name'
const MAX_DOC_BYTES = 16 << 20

interface LayoutIndex { schemaVersion: 2; mediaType?: string; manifests: Descriptor[]; annotations?: Record<string, string> }

export function blobPath(dir: string, digest: string): string {
  const colon = digest.indexOf(':')
  return join(dir, 'blobs', digest.slice(0, colon), digest.slice(colon + 1))
}

async function readIndex(dir: string): Promise<LayoutIndex> {
  const path = join(dir, 'index.json')
  let text: string
  try {
    await readFile(join(dir, 'oci-layout'), 'utf8')
    text = await readFile(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${dir} is not an OCI image layout (no oci-layout or index.json)`, { cause: e })
    throw e
  }
  let j: unknown
  try { j = JSON.parse(text) } catch (e) { throw new ManifestError(`${path} is not JSON: ${(e as Error).message}`, {}, { cause: e }) }
  const o = j as { manifests?: unknown }
  if (typeof j !== 'object' || j === null || !Array.isArray(o.manifests)) throw new ManifestError(`${path} has no "manifests" array`, {})
  const manifests = o.manifests.map((d, i) => parseDescriptor(d, `${path} manifests[${i}]`, {}))
  return { ...(j as LayoutIndex), manifests }
}

async function readVerified(dir: string, desc: Descriptor, max: number): Promise<Buffer> {
  if (desc.size > max) throw new ManifestError(`blob ${desc.digest} in ${dir} is ${desc.size} bytes, over the ${max}-byte limit`, {})
  let bytes: Buffer
  try { bytes = await readFile(blobPath(dir, desc.digest)) } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`blob ${desc.digest} is missing from OCI layout ${dir}`, { cause: e })
    throw e
  }
  verifyDigest(bytes, desc.digest, { digest: desc.digest })
  return bytes
}

export class OciLayoutInput implements ImageInput {
  readonly name: string
  constructor(readonly dir: string, readonly tag: string | undefined) {
    this.name = `oci:${dir}${tag === undefined ? '' : ':' + tag}`
  }

  async root(): Promise<FetchedDocument> {
    const index = await readIndex(this.dir)
    let matches = index.manifests
    if (this.tag !== undefined) matches = matches.filter((d) => d.annotations?.[REF_NAME_ANNOTATION] === this.tag)
    if (matches.length !== 1) {
      const tags = index.manifests.map((d) => d.annotations?.[REF_NAME_ANNOTATION] ?? `(untagged ${d.digest})`).join(', ')
      const what = this.tag === undefined ? 'name a tag (oci:DIR:TAG)' : `tag ${JSON.stringify(this.tag)} ${matches.length === 0 ? 'is not there' : 'is ambiguous'}`
      throw new NotFoundError(`OCI layout ${this.dir}: ${what}; it holds: ${tags || 'nothing'}`)
    }
    return this.child(matches[0] as Descriptor)
  }

  async child(desc: Descriptor): Promise<FetchedDocument> {
    const bytes = await readVerified(this.dir, desc, MAX_DOC_BYTES)
    const parsed = parseManifest(bytes, desc.mediaType, { digest: desc.digest })
    const mediaType = parsed.kind === 'index' ? parsed.index.mediaType : parsed.manifest.mediaType
    return { digest: desc.digest, mediaType, bytes, parsed }
  }

  readBlob(desc: Descriptor): Promise<Buffer> { return readVerified(this.dir, desc, MAX_DOC_BYTES) }

  openBlob(desc: Descriptor): Promise<RangeSource> { return FileRangeSource.open(blobPath(this.dir, desc.digest)) }

  streamBlob(desc: Descriptor, onBytes?: (n: number) => void): AsyncIterable<Buffer> {
    return fileStream(blobPath(this.dir, desc.digest), desc.digest, desc.size, onBytes)
  }

  async close(): Promise<void> { /* nothing held */ }
}

async function exists(path: string, size: number): Promise<boolean> {
  try { return (await stat(path)).size === size } catch { return false }
}

/** Writes into a layout, creating it if needed. Blobs go through a temp file and a rename. */
export class OciLayoutOutput implements ImageOutput {
  readonly name: string
  private ready: Promise<void> | undefined
  constructor(readonly dir: string, readonly tag: string | undefined) {
    this.name = `oci:${dir}${tag === undefined ? '' : ':' + tag}`
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true })
      try { await stat(join(this.dir, 'oci-layout')) } catch {
        await writeFile(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
      }
      try { await stat(join(this.dir, 'index.json')) } catch {
        await writeFile(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }))
      }
    })()
    return this.ready
  }

  private async place(desc: Descriptor, write: (tmp: string) => Promise<void>): Promise<BlobPlacement> {
    await this.init()
    const dest = blobPath(this.dir, desc.digest)
    if (await exists(dest, desc.size)) return 'exists'
    await mkdir(join(dest, '..'), { recursive: true })
    const tmp = `${dest}.tmp-${randomBytes(6).toString('hex')}`
    try {
      await write(tmp)
      await rename(tmp, dest)
    } catch (e) {
      await unlink(tmp).catch(() => undefined)
      throw e
    }
    return 'written'
  }

  putBlobFile(desc: Descriptor, path: string): Promise<BlobPlacement> {
    return this.place(desc, (tmp) => copyFile(path, tmp))
  }

  putBlobBytes(desc: Descriptor, bytes: Buffer): Promise<BlobPlacement> {
    if (sha256Digest(bytes) !== desc.digest) throw new InvalidArgumentError(`blob bytes do not hash to ${desc.digest}`)
    return this.place(desc, (tmp) => writeFile(tmp, bytes))
  }

  async tryLinkBlob(): Promise<BlobPlacement | undefined> { return undefined }

  async putManifest(bytes: Buffer, mediaType: string, root: boolean): Promise<void> {
    const digest = sha256Digest(bytes)
    await this.putBlobBytes({ mediaType, digest, size: bytes.length }, bytes)
    if (!root) return
    const index = await readIndex(this.dir)
    const desc: Descriptor = { mediaType, digest, size: bytes.length }
    if (this.tag !== undefined) desc.annotations = { [REF_NAME_ANNOTATION]: this.tag }
    const keep = index.manifests.filter((d) => this.tag === undefined
      ? !(d.digest === digest && d.annotations?.[REF_NAME_ANNOTATION] === undefined)
      : d.annotations?.[REF_NAME_ANNOTATION] !== this.tag)
    const next = { ...index, manifests: [...keep, desc] }
    const path = join(this.dir, 'index.json')
    const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`
    await writeFile(tmp, JSON.stringify(next))
    await rename(tmp, path)
  }

  async close(): Promise<void> { /* nothing held */ }
}
