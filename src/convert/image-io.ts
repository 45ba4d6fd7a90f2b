/**
 * The two ends of a conversion. An ImageInput reads manifests, configs and layer blobs (every
 * byte checked against its digest); an ImageOutput stores blobs and manifests. Registries and
 * OCI image layouts implement both (registry-io.ts, oci-io.ts).
 */
import type { RangeSource } from '../estargz/types.js'
import type { Descriptor, ParsedManifest } from '../registry/manifest.js'

export interface FetchedDocument {
  digest: string
  mediaType: string
  bytes: Buffer
  parsed: ParsedManifest
}

export interface ImageInput {
  /** For messages: "127.0.0.1:5000/app:1" or "oci:/tmp/layout:1". */
  readonly name: string
  /** The manifest or index the location names. */
  root(): Promise<FetchedDocument>
  /** A manifest or index referenced by an index. */
  child(desc: Descriptor): Promise<FetchedDocument>
  /** A small blob (a config), whole and verified. */
  readBlob(desc: Descriptor): Promise<Buffer>
  /** Random access to a blob (footer probes, lazy mounts). The caller closes it. */
  openBlob(desc: Descriptor): Promise<RangeSource>
  /**
   * The blob as a stream; `onBytes` sees every piece. The iterator throws when the bytes do not
   * hash to the digest, before it reports its end.
   */
  streamBlob(desc: Descriptor, onBytes?: (n: number) => void): AsyncIterable<Buffer>
  close(): Promise<void>
}

export type BlobPlacement = 'exists' | 'mounted' | 'uploaded' | 'written'

export interface ImageOutput {
  readonly name: string
  /** Store a blob held in a local file (already verified by the caller's digest). */
  putBlobFile(desc: Descriptor, path: string): Promise<BlobPlacement>
  putBlobBytes(desc: Descriptor, bytes: Buffer): Promise<BlobPlacement>
  /**
   * Make a blob of `input` present without converting it (a layer kept as it was), by cross-repo
   * mount where the registry allows it; `undefined` when the caller must copy the bytes.
   */
  tryLinkBlob(input: ImageInput, desc: Descriptor): Promise<BlobPlacement | undefined>
  /** Store a manifest or index; `root` tags it with the destination's tag. */
  putManifest(bytes: Buffer, mediaType: string, root: boolean): Promise<void>
  close(): Promise<void>
}
