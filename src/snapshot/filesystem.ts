/**
 * The seam between containerd snapshot semantics (src/snapshot) and lazy layer mounts
 * (src/fuse + src/layer), like the reference's three-method FileSystem interface: the
 * snapshotter can be tested without FUSE by passing a fake.
 */
export interface RemoteLayerInfo {
  /** Image reference, e.g. 127.0.0.1:5000/library/busybox:esgz */
  imageRef: string
  /** Compressed layer digest. */
  layerDigest: string
  /** TOC digest from the layer annotation, when known. */
  tocDigest?: string
  /** All layer digests of the image, for prefetching neighbours (optional). */
  imageLayers?: string[]
  /** Extra labels from the Prepare call, for implementations that need more. */
  labels: Record<string, string>
}

export interface FileSystem {
  /**
   * Mount the layer read-only at `mountpoint` (an existing empty dir). Rejects with a typed error
   * when the layer is not eStargz or its TOC does not verify; the snapshotter then falls back to
   * a normal snapshot that containerd unpacks.
   */
  mount(mountpoint: string, layer: RemoteLayerInfo, signal?: AbortSignal): Promise<void>
  /** Is the mount at `mountpoint` healthy (its blob still reachable)? Rejects if not. */
  check(mountpoint: string, layer: RemoteLayerInfo): Promise<void>
  unmount(mountpoint: string): Promise<void>
  /**
   * Mountpoints that are live and served by a process that outlives the snapshotter (stargz-fused):
   * restore() keeps these instead of detaching them, and mount() on them re-attaches. Optional.
   */
  liveMounts?(): Promise<string[]>
}
