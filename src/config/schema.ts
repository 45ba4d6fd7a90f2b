/**
 * Configuration schema: every key, its type and bounds; the defaults are in ./defaults.ts (shared
 * with the library modules). Keys the reference has and we do not are in ./reference.ts. Where a key means
 * what it means in the reference's containerd-stargz-grpc config (fs/config/config.go), it has
 * the same name, so users can carry their config over: note `noprefetch` (no underscore) and
 * `resolve_result_entry_ttl_sec`, as the reference spells them.
 *
 * config/config.toml documents each key with its default; test/config checks the two agree.
 */
import { CONFIG_DEFAULTS } from './defaults.js'

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'

/** pino: pino's own JSON (numeric levels, epoch-ms time); json, text: as containerd (logrus) writes them. */
export type LogFormat = 'pino' | 'json' | 'text'

export interface BlobConfig {
  valid_interval: number
  check_always: boolean
  chunk_size: number
  fetching_timeout_sec: number
  force_single_range_mode: boolean
  max_retries: number
  min_wait_msec: number
  max_wait_msec: number
}

export interface CacheConfig {
  dir: string
  max_size_mb: number
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
  log_format: LogFormat
  hosts_dir: string
  metrics_address: string
  no_prometheus: boolean
  mount_timeout_sec: number
  shutdown_timeout_sec: number
  prefetch_timeout_sec: number
  noprefetch: boolean
  no_background_fetch: boolean
  resolve_result_entry_ttl_sec: number
  max_concurrency: number
  metadata_budget_mb: number
  metadata_layer_budget_mb: number
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

/** The config's defaults: src/config/defaults.ts, shared with the library modules' own. */
export const DEFAULTS: Readonly<Config> = CONFIG_DEFAULTS

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const

export const TOP_KEYS: Readonly<Record<Exclude<keyof Config, Section>, KeySpec>> = {
  address: { type: 'string', absolute: true },
  root: { type: 'string', absolute: true },
  log_level: { type: 'enum', values: LEVELS },
  log_format: { type: 'enum', values: ['pino', 'json', 'text'] },
  hosts_dir: { type: 'string', absolute: true },
  metrics_address: { type: 'string', allowEmpty: true },
  no_prometheus: { type: 'bool' },
  mount_timeout_sec: { type: 'int', min: 1, max: 3600 },
  shutdown_timeout_sec: { type: 'int', min: 0, max: 3600 },
  prefetch_timeout_sec: { type: 'int', min: 0, max: 3600 },
  noprefetch: { type: 'bool' },
  no_background_fetch: { type: 'bool' },
  resolve_result_entry_ttl_sec: { type: 'int', min: 0, max: 86_400 },
  max_concurrency: { type: 'int', min: 1, max: 1024 },
  metadata_budget_mb: { type: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
  metadata_layer_budget_mb: { type: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
  disable_verification: { type: 'bool' },
}

export const SECTION_KEYS: { readonly [S in Section]: Readonly<Record<keyof Config[S], KeySpec>> } = {
  blob: {
    valid_interval: { type: 'int', min: 0, max: 86_400 },
    check_always: { type: 'bool' },
    chunk_size: { type: 'int', min: 4096, max: 256 * 1024 * 1024 },
    fetching_timeout_sec: { type: 'int', min: 1, max: 86_400 },
    force_single_range_mode: { type: 'bool' },
    max_retries: { type: 'int', min: 0, max: 100 },
    min_wait_msec: { type: 'int', min: 0, max: 3_600_000 },
    max_wait_msec: { type: 'int', min: 0, max: 3_600_000 },
  },
  cache: {
    dir: { type: 'string', absolute: true, allowEmpty: true },
    max_size_mb: { type: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
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
