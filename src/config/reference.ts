/**
 * The reference's config keys (containerd-stargz-grpc's config.toml: fs/config, service/config,
 * service/resolver and cmd/containerd-stargz-grpc) that stargzd does not have under the same name,
 * so a reference config.toml starts the daemon: each is accepted when its value has the
 * reference's type, and the daemon warns once per key that it is not implemented and what it
 * does instead. Keys with the same name and meaning are native (./schema.ts) and do not appear
 * here; when a native key gets added under a reference name, the native one wins.
 *
 * Written from the reference's documented field names and types; any key not here and not native
 * stays an error, so typos are still caught.
 */
export type RefType = 'bool' | 'int' | 'string' | 'resolver-hosts' | 'header'

export interface ReferenceKey {
  type: RefType
  /** What stargzd does instead (shown in the warning and the README's migration table). */
  instead: string
}

const CACHE_INSTEAD = 'one chunk cache: a 256 MiB in-memory LRU in front of the disk cache configured by [cache] dir and max_size_mb'
const FUSE_MANAGER_INSTEAD = 'FUSE is served by the stargzd process itself; there is no separate FUSE manager process'
const PASSTHROUGH_INSTEAD = 'FUSE passthrough is not supported: reads are served by stargzd, and the kernel keeps page cache across opens (auto_cache)'

export const REFERENCE_TOP_KEYS: Readonly<Record<string, ReferenceKey>> = {
  http_cache_type: { type: 'string', instead: CACHE_INSTEAD },
  http_cache_chunk_ttl_sec: { type: 'int', instead: 'cache entries are evicted by size ([cache] max_size_mb), not by age' },
  filesystem_cache_type: { type: 'string', instead: CACHE_INSTEAD },
  prefetch_size: { type: 'int', instead: 'only what the image marks is prefetched (its prefetch landmark, from `stargz optimize` or `ctr-remote image optimize`); other layers are read on demand and fetched in the background' },
  prefetch_async_size: { type: 'int', instead: 'a mount waits for its prefetch at most prefetch_timeout_sec, whatever its size' },
  debug: { type: 'bool', instead: 'set log_level = "debug"' },
  allow_no_verification: { type: 'bool', instead: 'disable_verification = true also allows layers without a TOC digest' },
  log_file_access: { type: 'bool', instead: 'first accesses are not logged; the per-layer state file and metrics show what was fetched' },
  resolve_result_entry: { type: 'int', instead: 'deprecated in the reference as well; resolve_result_entry_ttl_sec applies' },
  debug_address: { type: 'string', instead: 'there is no /debug endpoint; metrics are served on metrics_address' },
  ipfs: { type: 'bool', instead: 'layers come from OCI registries only; IPFS is not supported' },
  metadata_store: { type: 'string', instead: 'TOC metadata is held in memory per resolved layer' },
}

export const REFERENCE_SECTION_KEYS: Readonly<Record<string, Readonly<Record<string, ReferenceKey>>>> = {
  blob: {
    prefetch_chunk_size: { type: 'int', instead: 'the prefetch range is fetched by the chunk reader, which splits and merges requests itself' },
  },
  directory_cache: {
    max_lru_cache_entry: { type: 'int', instead: CACHE_INSTEAD },
    max_cache_fds: { type: 'int', instead: 'not configurable: the disk cache manages its own file handles' },
    sync_add: { type: 'bool', instead: 'not configurable: cache entries are always written as a temp file and renamed into place' },
    direct: { type: 'bool', instead: CACHE_INSTEAD },
    fadv_dontneed: { type: 'bool', instead: 'the page cache of cache files is left to the kernel' },
  },
  fuse: {
    passthrough: { type: 'bool', instead: PASSTHROUGH_INSTEAD },
    merge_buffer_size: { type: 'int', instead: PASSTHROUGH_INSTEAD },
    merge_worker_count: { type: 'int', instead: PASSTHROUGH_INSTEAD },
  },
  kubeconfig_keychain: {
    enable_keychain: { type: 'bool', instead: 'Kubernetes secrets are not read; credentials come from the CRI keychain ([cri_keychain]) and the Docker config' },
    kubeconfig_path: { type: 'string', instead: 'Kubernetes secrets are not read; credentials come from the CRI keychain ([cri_keychain]) and the Docker config' },
  },
  cri_keychain: {
    // enable_keychain and image_service_path are native (src/cri).
    listen_path: { type: 'string', instead: 'the CRI ImageService proxy is served on [cri_keychain] proxy_path, never on the snapshotter socket' },
  },
  resolver: {
    host: { type: 'resolver-hosts', instead: 'registry hosts, mirrors, plain HTTP and headers come from containerd\'s hosts.toml files under hosts_dir (/etc/containerd/certs.d)' },
    request_timeout_sec: { type: 'int', instead: 'registry requests are bounded by [blob] fetching_timeout_sec' },
  },
  snapshotter: {
    allow_invalid_mounts_on_restart: { type: 'bool', instead: 'a remote snapshot that cannot be mounted again at restart is logged (remote-snapshot-restore-failed) and the daemon starts anyway' },
  },
  fuse_manager: {
    enable: { type: 'bool', instead: FUSE_MANAGER_INSTEAD },
    address: { type: 'string', instead: FUSE_MANAGER_INSTEAD },
    path: { type: 'string', instead: FUSE_MANAGER_INSTEAD },
    per_container: { type: 'bool', instead: FUSE_MANAGER_INSTEAD },
    address_template: { type: 'string', instead: FUSE_MANAGER_INSTEAD },
    store_template: { type: 'string', instead: FUSE_MANAGER_INSTEAD },
    log_template: { type: 'string', instead: FUSE_MANAGER_INSTEAD },
  },
}
