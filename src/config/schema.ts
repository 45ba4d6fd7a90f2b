/**
 * Configuration schema: every key, its type, bounds and default, in one place. Where a key means
 * what it means in the reference's containerd-stargz-grpc config (fs/config/config.go), it has
 * the same name, so users can carry their config over: note `noprefetch` (no underscore) and
 * `resolve_result_entry_ttl_sec`, as the reference spells them.
 *
 * config/config.toml documents each key with its default; test/config checks the two agree.
 */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'

export interface BlobConfig {
  valid_interval: number
  check_always: boolean
  chunk_size: number
  fetching_timeout_sec: number
  force_single_range_mode: boolean
  prefetch_chunk_size: number
  max_retries: number
  min_wait_msec: number
  max_wait_msec: number
}

export interface CacheConfig {
  dir: string
  max_size_mb: number
  max_lru_cache_entry: number
}

export interface FuseConfig {
  attr_timeout: number
  entry_timeout: number
}

/** The reference's [cri_keychain] (src/cri): credentials from kubelet's PullImage calls. */
export interface CriKeychainConfig {
  enable_keychain: boolean
  /** The backing CRI image service (containerd's socket), as in the reference. */
  image_service_path: string
  /** Where stargzd serves the ImageService proxy (kubelet --image-service-endpoint). Ours. */
  proxy_path: string
  /** How long credentials are kept after the last PullImage that carried them. Ours. */
  credential_ttl_sec: number
}

export interface Config {
  address: string
  root: string
  log_level: LogLevel
  hosts_dir: string
  metrics_address: string
  no_prometheus: boolean
  mount_timeout_sec: number
  shutdown_timeout_sec: number
  prefetch_size: number
  prefetch_timeout_sec: number
  noprefetch: boolean
  no_background_fetch: boolean
  resolve_result_entry_ttl_sec: number
  max_concurrency: number
  disable_verification: boolean
  blob: BlobConfig
  cache: CacheConfig
  fuse: FuseConfig
  cri_keychain: CriKeychainConfig
}

export type Section = 'blob' | 'cache' | 'fuse' | 'cri_keychain'

export type KeySpec =
  | { type: 'string'; absolute?: boolean; allowEmpty?: boolean }
  | { type: 'bool' }
  | { type: 'int'; min: number; max?: number }
  | { type: 'enum'; values: readonly string[] }

export const DEFAULT_CONFIG_PATH = '/etc/stargzd/config.toml'

export const DEFAULTS: Readonly<Config> = Object.freeze({
  address: '/run/stargzd/stargzd.sock',
  root: '/var/lib/stargzd',
  log_level: 'info',
  hosts_dir: '/etc/containerd/certs.d',
  metrics_address: '',
  no_prometheus: false,
  mount_timeout_sec: 30,
  shutdown_timeout_sec: 30,
  prefetch_size: 0,
  prefetch_timeout_sec: 10,
  noprefetch: false,
  no_background_fetch: false,
  resolve_result_entry_ttl_sec: 120,
  max_concurrency: 2,
  disable_verification: false,
  blob: Object.freeze({
    valid_interval: 60,
    check_always: false,
    chunk_size: 1_048_576,
    fetching_timeout_sec: 300,
    force_single_range_mode: false,
    prefetch_chunk_size: 0,
    max_retries: 5,
    min_wait_msec: 30,
    max_wait_msec: 300_000,
  }),
  cache: Object.freeze({
    dir: '',
    max_size_mb: 10_240,
    max_lru_cache_entry: 10,
  }),
  fuse: Object.freeze({
    attr_timeout: 3600,
    entry_timeout: 3600,
  }),
  cri_keychain: Object.freeze({
    enable_keychain: false,
    image_service_path: '/run/containerd/containerd.sock',
    proxy_path: '/run/stargzd/cri-image.sock',
    credential_ttl_sec: 86_400,
  }),
}) as Readonly<Config>

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const
const INT32 = 2_147_483_647

export const TOP_KEYS: Readonly<Record<Exclude<keyof Config, Section>, KeySpec>> = {
  address: { type: 'string', absolute: true },
  root: { type: 'string', absolute: true },
  log_level: { type: 'enum', values: LEVELS },
  hosts_dir: { type: 'string', absolute: true },
  metrics_address: { type: 'string', allowEmpty: true },
  no_prometheus: { type: 'bool' },
  mount_timeout_sec: { type: 'int', min: 1, max: 3600 },
  shutdown_timeout_sec: { type: 'int', min: 0, max: 3600 },
  prefetch_size: { type: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  prefetch_timeout_sec: { type: 'int', min: 0, max: 3600 },
  noprefetch: { type: 'bool' },
  no_background_fetch: { type: 'bool' },
  resolve_result_entry_ttl_sec: { type: 'int', min: 0, max: 86_400 },
  max_concurrency: { type: 'int', min: 1, max: 1024 },
  disable_verification: { type: 'bool' },
}

export const SECTION_KEYS: { readonly [S in Section]: Readonly<Record<keyof Config[S], KeySpec>> } = {
  blob: {
    valid_interval: { type: 'int', min: 0, max: 86_400 },
    check_always: { type: 'bool' },
    chunk_size: { type: 'int', min: 4096, max: 256 * 1024 * 1024 },
    fetching_timeout_sec: { type: 'int', min: 1, max: 86_400 },
    force_single_range_mode: { type: 'bool' },
    prefetch_chunk_size: { type: 'int', min: 0, max: INT32 },
    max_retries: { type: 'int', min: 0, max: 100 },
    min_wait_msec: { type: 'int', min: 0, max: 3_600_000 },
    max_wait_msec: { type: 'int', min: 0, max: 3_600_000 },
  },
  cache: {
    dir: { type: 'string', absolute: true, allowEmpty: true },
    max_size_mb: { type: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
    max_lru_cache_entry: { type: 'int', min: 0, max: 1_000_000 },
  },
  fuse: {
    attr_timeout: { type: 'int', min: 0, max: 86_400 },
    entry_timeout: { type: 'int', min: 0, max: 86_400 },
  },
  cri_keychain: {
    enable_keychain: { type: 'bool' },
    image_service_path: { type: 'string', absolute: true },
    proxy_path: { type: 'string', absolute: true },
    credential_ttl_sec: { type: 'int', min: 1, max: 30 * 86_400 },
  },
}
