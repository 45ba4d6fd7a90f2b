/**
 * Labels that drive remote snapshots, as set by containerd's unpacker (`snapshot.ref`), by
 * ctr-remote / nerdctl's stargz handler and by the CRI plugin's snapshotter annotations.
 */
import { InvalidArgumentError } from '../errors.js'
import type { RemoteLayerInfo } from './filesystem.js'

/** The chain ID containerd wants the unpacked layer committed as. */
export const TARGET_SNAPSHOT_LABEL = 'containerd.io/snapshot.ref'
/** Marks a snapshot we committed from a remote mount (value as in the reference). */
export const REMOTE_LABEL = 'containerd.io/snapshot/remote'
export const REMOTE_LABEL_VALUE = 'remote snapshot'

export const STARGZ_REFERENCE_LABEL = 'containerd.io/snapshot/remote/stargz.reference'
export const STARGZ_DIGEST_LABEL = 'containerd.io/snapshot/remote/stargz.digest'
export const STARGZ_LAYERS_LABEL = 'containerd.io/snapshot/remote/stargz.layers'
export const REMOTE_URLS_LABEL = 'containerd.io/snapshot/remote/urls'
export const TOC_DIGEST_LABEL = 'containerd.io/snapshot/stargz/toc.digest'
export const CRI_IMAGE_REF_LABEL = 'containerd.io/snapshot/cri.image-ref'
export const CRI_LAYER_DIGEST_LABEL = 'containerd.io/snapshot/cri.layer-digest'
export const CRI_IMAGE_LAYERS_LABEL = 'containerd.io/snapshot/cri.image-layers'

/** containerd labels.Validate: key + value at most 4096 bytes. */
const MAX_LABEL_BYTES = 4096

export function validateLabels(labels: Record<string, string>): void {
  for (const [k, v] of Object.entries(labels)) {
    if (k === '') throw new InvalidArgumentError('label key must not be empty')
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_BYTES) {
      throw new InvalidArgumentError(`label key and value greater than maximum size (${MAX_LABEL_BYTES} bytes), key: ${k.slice(0, 64)}`)
    }
  }
}

function splitList(s: string | undefined): string[] | undefined {
  if (s === undefined || s === '') return undefined
  return s.split(',').map((x) => x.trim()).filter(Boolean)
}

/**
 * The layer a Prepare asks for, or a reason why it is not a remote-snapshot candidate. The
 * stargz labels win over the CRI ones when both are present.
 */
export function remoteLayerFromLabels(labels: Record<string, string>): { layer: RemoteLayerInfo } | { reason: string } {
  const imageRef = labels[STARGZ_REFERENCE_LABEL] ?? labels[CRI_IMAGE_REF_LABEL]
  const layerDigest = labels[STARGZ_DIGEST_LABEL] ?? labels[CRI_LAYER_DIGEST_LABEL]
  if (!imageRef || !layerDigest) return { reason: 'no image reference or layer digest label' }
  const layer: RemoteLayerInfo = { imageRef, layerDigest, labels: { ...labels } }
  const toc = labels[TOC_DIGEST_LABEL]
  if (toc) layer.tocDigest = toc
  const layers = splitList(labels[STARGZ_LAYERS_LABEL] ?? labels[CRI_IMAGE_LAYERS_LABEL])
  if (layers) layer.imageLayers = layers
  return { layer }
}

export function isRemote(labels: Record<string, string>): boolean {
  return labels[REMOTE_LABEL] !== undefined
}
