/**
 * `stargz rpull`: what `ctr-remote image rpull` does, through containerd's gRPC API.
 *
 *   1. resolve REF in the registry (index → the platform's manifest → config);
 *   2. under a lease, for each layer bottom-up: Prepare a snapshot named after its chain ID on the
 *      stargz snapshotter, with the labels ctr-remote sets (snapshot.ref = chain ID,
 *      remote/stargz.reference, .digest, .layers, and the layer's containerd.io/snapshot/*
 *      annotations such as stargz/toc.digest). stargzd mounts the layer lazily and answers
 *      AlreadyExists; that layer is done without a byte of it in containerd's content store.
 *      A layer stargzd cannot mount (plain gzip) comes back as an active snapshot: it is
 *      downloaded into the content store, applied with the diff service, and committed, as
 *      containerd's unpacker does;
 *   3. write index/manifest/config into the content store with containerd's gc reference labels
 *      (config → the top snapshot), create or update the image record, drop the lease.
 *
 * After it, `ctr run --snapshotter stargz REF` starts from the same snapshots.
 */
import { randomBytes } from 'node:crypto'
import { InvalidArgumentError, NotFoundError } from '../errors.js'
import type { RegistryClient } from '../registry/client.js'
import { selectManifest, sha256Digest, type Descriptor as OciDescriptor, type Platform } from '../registry/manifest.js'
import { formatReference, withDigest, type Reference } from '../registry/reference.js'
import { STARGZ_DIGEST_LABEL, STARGZ_LAYERS_LABEL, STARGZ_REFERENCE_LABEL, TARGET_SNAPSHOT_LABEL } from '../snapshot/labels.js'
import { AlreadyExistsError } from '../errors.js'
import type { ContainerdClient, Descriptor, Mount } from './containerd/client.js'

/** containerd labels.Validate: key + value at most 4096 bytes. */
const MAX_LABEL_BYTES = 4096
/** Pieces of a layer streamed into the content store on the fallback path. */
const PIECE = 4 << 20
/** The lease outlives a crashed rpull by this long, then containerd collects what it held. */
const LEASE_TTL_MS = 24 * 3600_000

export interface RpullOptions {
  snapshotter: string
  platform: Platform
  /** Labels on the image record (`--label K=V`). */
  labels: Record<string, string>
  log(message: string): void
}

export interface RpullLayer { digest: string; chainID: string; how: 'remote' | 'unpacked' | 'existing' }

export interface RpullResult { name: string; target: Descriptor; layers: RpullLayer[] }

/** OCI image-spec chain IDs: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)). */
export function chainIDs(diffIDs: readonly string[]): string[] {
  const out: string[] = []
  for (const d of diffIDs) out.push(out.length === 0 ? d : sha256Digest(Buffer.from(`${out[out.length - 1] as string} ${d}`)))
  return out
}

/**
 * The layer digests from `index` up, comma-separated, cut to what fits in one label (as the
 * reference does: stargzd uses them to prefetch the next layers' TOCs, a hint, not a contract).
 */
export function layersLabel(digests: readonly string[], index: number): string {
  let out = ''
  for (const d of digests.slice(index)) {
    const next = out === '' ? d : `${out},${d}`
    if (Buffer.byteLength(STARGZ_LAYERS_LABEL) + Buffer.byteLength(next) > MAX_LABEL_BYTES) break
    out = next
  }
  return out
}

/** Snapshot labels for layer `i`, as ctr-remote's handler sets them. */
export function snapshotLabels(name: string, layers: readonly OciDescriptor[], i: number, chainID: string): Record<string, string> {
  const layer = layers[i] as OciDescriptor
  const labels: Record<string, string> = {}
  // containerd's unpacker forwards the layer's containerd.io/snapshot/* annotations (the TOC digest).
  for (const [k, v] of Object.entries(layer.annotations ?? {})) if (k.startsWith('containerd.io/snapshot/')) labels[k] = v
  labels[TARGET_SNAPSHOT_LABEL] = chainID
  labels[STARGZ_REFERENCE_LABEL] = name
  labels[STARGZ_DIGEST_LABEL] = layer.digest
  labels[STARGZ_LAYERS_LABEL] = layersLabel(layers.map((l) => l.digest), i)
  return labels
}

function toDesc(d: { mediaType: string; digest: string; size: number }): Descriptor {
  return { media_type: d.mediaType, digest: d.digest, size: d.size }
}

async function snapshotExists(ctrd: ContainerdClient, snapshotter: string, key: string): Promise<boolean> {
  try {
    await ctrd.call('snapshots', 'Stat', { snapshotter, key })
    return true
  } catch (e) {
    if (e instanceof NotFoundError) return false
    throw e
  }
}

async function* blobPieces(registry: RegistryClient, ref: Reference, d: OciDescriptor): AsyncGenerator<Buffer> {
  const blob = await registry.blob(ref, d.digest, d.size)
  try {
    for (let off = 0; off < d.size; off += PIECE) yield await blob.read(off, Math.min(PIECE, d.size - off))
  } finally {
    await blob.close()
  }
}

/** Layer `i` the way containerd's unpacker does it when the snapshotter cannot mount it. */
async function unpackLayer(registry: RegistryClient, ctrd: ContainerdClient, ref: Reference, layer: OciDescriptor, key: string, chainID: string, mounts: Mount[], opts: RpullOptions): Promise<void> {
  try {
    if (!(await ctrd.hasContent(layer.digest))) {
      opts.log(`layer ${layer.digest}: not lazily mountable; downloading ${layer.size} bytes`)
      await ctrd.writeContent(`stargz-rpull-${layer.digest}`, toDesc(layer), blobPieces(registry, ref, layer))
    }
    await ctrd.call('diff', 'Apply', { diff: toDesc(layer), mounts })
    await ctrd.call('snapshots', 'Commit', { snapshotter: opts.snapshotter, name: chainID, key, labels: { [TARGET_SNAPSHOT_LABEL]: chainID } })
  } catch (e) {
    await ctrd.call('snapshots', 'Remove', { snapshotter: opts.snapshotter, key }).catch(() => undefined)
    throw e
  }
}

export async function rpull(registry: RegistryClient, ctrd: ContainerdClient, ref: Reference, opts: RpullOptions): Promise<RpullResult> {
  const name = formatReference(ref)
  const top = await registry.fetchManifest(ref)
  let index: typeof top | undefined
  let fetched = top
  if (top.parsed.kind === 'index') {
    index = top
    const d = selectManifest(top.parsed.index, opts.platform, { registry: ref.registry, repository: ref.repository, digest: top.digest })
    fetched = await registry.fetchManifest(withDigest(ref, d.digest))
  }
  if (fetched.parsed.kind !== 'manifest') throw new InvalidArgumentError(`${name}: nested indexes are not supported by rpull`)
  const manifest = fetched.parsed.manifest
  const configBytes = await registry.fetchBlob(ref, manifest.config.digest, manifest.config.size)
  const config = JSON.parse(configBytes.toString('utf8')) as { rootfs?: { diff_ids?: unknown } }
  const diffIDs = config.rootfs?.diff_ids
  if (!Array.isArray(diffIDs) || diffIDs.length !== manifest.layers.length || !diffIDs.every((d) => typeof d === 'string')) {
    throw new InvalidArgumentError(`${name}: config ${manifest.config.digest} has ${Array.isArray(diffIDs) ? diffIDs.length : 'no'} diff_ids for ${manifest.layers.length} layers`)
  }
  const chains = chainIDs(diffIDs as string[])

  const leaseID = `stargz-rpull-${Date.now()}-${randomBytes(4).toString('hex')}`
  await ctrd.call('leases', 'Create', { id: leaseID, labels: { 'containerd.io/gc.expire': new Date(Date.now() + LEASE_TTL_MS).toISOString() } })
  ctrd.useLease(leaseID)
  try {
    const layers: RpullLayer[] = []
    for (const [i, layer] of manifest.layers.entries()) {
      const chainID = chains[i] as string
      const parent = i === 0 ? '' : (chains[i - 1] as string)
      if (await snapshotExists(ctrd, opts.snapshotter, chainID)) { layers.push({ digest: layer.digest, chainID, how: 'existing' }); continue }
      const key = `extract-${Date.now()}-${randomBytes(4).toString('hex')} ${chainID}`
      let mounts: Mount[]
      try {
        const r = await ctrd.call<{ mounts: Mount[] }>('snapshots', 'Prepare', { snapshotter: opts.snapshotter, key, parent, labels: snapshotLabels(name, manifest.layers, i, chainID) })
        mounts = r.mounts
      } catch (e) {
        // The snapshotter mounted it remotely and committed it as chainID.
        if (e instanceof AlreadyExistsError && (await snapshotExists(ctrd, opts.snapshotter, chainID))) {
          layers.push({ digest: layer.digest, chainID, how: 'remote' })
          continue
        }
        throw e
      }
      await unpackLayer(registry, ctrd, ref, layer, key, chainID, mounts, opts)
      layers.push({ digest: layer.digest, chainID, how: 'unpacked' })
    }

    // Content, with containerd's gc references so the image keeps its snapshots after the lease.
    const topChain = chains[chains.length - 1]
    await ctrd.writeContent(`stargz-rpull-${manifest.config.digest}`, toDesc(manifest.config), [configBytes],
      topChain === undefined ? {} : { [`containerd.io/gc.ref.snapshot.${opts.snapshotter}`]: topChain })
    const manifestLabels: Record<string, string> = { 'containerd.io/gc.ref.content.config': manifest.config.digest }
    for (const [i, l] of manifest.layers.entries()) manifestLabels[`containerd.io/gc.ref.content.l.${i}`] = l.digest
    const manifestDesc: Descriptor = { media_type: fetched.mediaType, digest: fetched.digest, size: fetched.bytes.length }
    await ctrd.writeContent(`stargz-rpull-${fetched.digest}`, manifestDesc, [fetched.bytes], manifestLabels)
    let target = manifestDesc
    if (index) {
      target = { media_type: index.mediaType, digest: index.digest, size: index.bytes.length }
      await ctrd.writeContent(`stargz-rpull-${index.digest}`, target, [index.bytes], { 'containerd.io/gc.ref.content.m.0': fetched.digest })
    }
    const image = { name, target, labels: opts.labels }
    try {
      await ctrd.call('images', 'Create', { image })
    } catch (e) {
      if (!(e instanceof AlreadyExistsError)) throw e
      await ctrd.call('images', 'Update', { image })
    }
    return { name, target, layers }
  } finally {
    ctrd.useLease(undefined)
    await ctrd.call('leases', 'Delete', { id: leaseID }).catch((e: unknown) => opts.log(`could not delete lease ${leaseID}: ${(e as Error).message}`))
  }
}
