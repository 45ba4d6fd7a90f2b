/** A registry as a conversion input or output, over RegistryClient. */
import { readFile } from 'node:fs/promises'
import type { RangeSource } from '../estargz/types.js'
import { repositoryScope } from '../registry/auth.js'
import type { RegistryClient } from '../registry/client.js'
import { digestMismatch } from '../registry/errors.js'
import { sha256Digest, type Descriptor } from '../registry/manifest.js'
import { formatReference, withDigest, type Reference } from '../registry/reference.js'
import { header } from '../registry/transport.js'
import { rangeSourceStream } from './blob-stream.js'
import type { BlobPlacement, FetchedDocument, ImageInput, ImageOutput } from './image-io.js'

export class RegistryInput implements ImageInput {
  readonly name: string
  constructor(readonly client: RegistryClient, readonly ref: Reference) { this.name = formatReference(ref) }

  root(): Promise<FetchedDocument> { return this.client.fetchManifest(this.ref) }

  child(desc: Descriptor): Promise<FetchedDocument> { return this.client.fetchManifest(withDigest(this.ref, desc.digest)) }

  readBlob(desc: Descriptor): Promise<Buffer> { return this.client.fetchBlob(this.ref, desc.digest, desc.size) }

  openBlob(desc: Descriptor): Promise<RangeSource> { return this.client.blob(this.ref, desc.digest, desc.size) }

  async *streamBlob(desc: Descriptor, onBytes?: (n: number) => void): AsyncGenerator<Buffer> {
    const blob = await this.client.blob(this.ref, desc.digest, desc.size)
    try {
      yield* rangeSourceStream(blob, desc.digest, `${this.name} blob ${desc.digest}`, onBytes)
    } finally {
      await blob.close()
    }
  }

  async close(): Promise<void> { /* the client belongs to the caller */ }
}

export class RegistryOutput implements ImageOutput {
  readonly name: string
  constructor(readonly client: RegistryClient, readonly ref: Reference) { this.name = formatReference(ref) }

  async putBlobFile(desc: Descriptor, path: string): Promise<BlobPlacement> {
    if (await this.client.blobExists(this.ref, desc.digest)) return 'exists'
    // The blob was verified when it was written; verify again what we read back from disk.
    const bytes = await readFile(path)
    const got = sha256Digest(bytes)
    if (got !== desc.digest) throw digestMismatch(desc.digest, got, { digest: desc.digest, path })
    return (await this.client.pushBlob(this.ref, bytes)).via
  }

  async putBlobBytes(desc: Descriptor, bytes: Buffer): Promise<BlobPlacement> {
    const r = await this.client.pushBlob(this.ref, bytes)
    if (r.digest !== desc.digest) throw digestMismatch(desc.digest, r.digest, { registry: this.ref.registry, repository: this.ref.repository })
    return r.via
  }

  /** HEAD, then a cross-repository mount when the input is another repository of this registry. */
  async tryLinkBlob(input: ImageInput, desc: Descriptor): Promise<BlobPlacement | undefined> {
    if (await this.client.blobExists(this.ref, desc.digest)) return 'exists'
    if (!(input instanceof RegistryInput) || input.ref.registry !== this.ref.registry || input.ref.repository === this.ref.repository) return undefined
    const session = await this.client.session(this.ref.registry)
    const ep = session.endpointsFor('push')[0]
    if (!ep) return undefined
    const ctx = { registry: this.ref.registry, repository: this.ref.repository, digest: desc.digest }
    const res = await session.requestOn(ep, {
      capability: 'push', method: 'POST', path: `/${this.ref.repository}/blobs/uploads/`, ctx, idempotent: false,
      query: { mount: desc.digest, from: input.ref.repository },
      scopes: [repositoryScope(this.ref.repository, ['pull', 'push']), repositoryScope(input.ref.repository, ['pull'])],
    })
    if (res.status === 201) return 'mounted'
    // 202: the registry opened an upload instead; cancel it (best effort) and let the caller copy.
    const loc = header(res, 'location')
    if (res.status === 202 && loc) {
      await session.requestOn(ep, { capability: 'push', method: 'DELETE', path: '', ctx, scopes: [repositoryScope(this.ref.repository, ['pull', 'push'])] }, new URL(loc, res.url)).catch(() => undefined)
    }
    return undefined
  }

  async putManifest(bytes: Buffer, mediaType: string, root: boolean): Promise<void> {
    const target: Reference = root ? this.ref : { registry: this.ref.registry, repository: this.ref.repository, tag: undefined, digest: undefined }
    await this.client.pushManifest(target, bytes, mediaType)
  }

  async close(): Promise<void> { /* the client belongs to the caller */ }
}
