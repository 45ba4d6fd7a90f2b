/** Media types of the Docker v2 schema 2 and OCI image formats. */

export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json'
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip'
export const DOCKER_LAYER_FOREIGN_GZIP = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar'
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
export const OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd'
export const OCI_LAYER_NONDIST_GZIP = 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json'

/** Legacy schema 1: recognised only to reject it with a clear message. */
export const DOCKER_MANIFEST_V1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws'
export const DOCKER_MANIFEST_V1 = 'application/vnd.docker.distribution.manifest.v1+json'

export const MANIFEST_TYPES: readonly string[] = [DOCKER_MANIFEST, OCI_MANIFEST]
export const INDEX_TYPES: readonly string[] = [DOCKER_MANIFEST_LIST, OCI_INDEX]

/** Accept header for manifest GET/HEAD: everything we can parse, single manifests first. */
export const MANIFEST_ACCEPT = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST].join(', ')

export function isIndexType(mt: string | undefined): boolean {
  return mt !== undefined && INDEX_TYPES.includes(mt)
}

export function isManifestType(mt: string | undefined): boolean {
  return mt !== undefined && MANIFEST_TYPES.includes(mt)
}

/** Layer media types whose blob is gzip and so may be eStargz. */
export function isGzipLayer(mt: string): boolean {
  return mt === DOCKER_LAYER_GZIP || mt === DOCKER_LAYER_FOREIGN_GZIP || mt === OCI_LAYER_GZIP || mt === OCI_LAYER_NONDIST_GZIP
}
