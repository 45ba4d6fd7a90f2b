/**
 * Every default in one place. The config file's defaults (CONFIG_DEFAULTS, what config/config.toml
 * documents) and the defaults a library module falls back to when it is used without a config
 * (LIBRARY_DEFAULTS: the registry transport, the background-fetch gate, the layer resolver, FUSE,
 * the chunk caches) both come from here, so `stargz mount`, the benchmarks and the daemon behave
 * alike, and a default changes in one line. Library defaults that have a config key are derived
 * from that key's default, never written twice.
 *
 * This module imports nothing: every layer may depend on it.
 */

const MIB = 1024 * 1024

/** The config file's defaults (keys as in config/config.toml). */
export const CONFIG_DEFAULTS = Object.freeze({
  address: '/run/stargzd/stargzd.sock',
  root: '/var/lib/stargzd',
  log_level: 'info',
  log_format: 'pino',
  hosts_dir: '/etc/containerd/certs.d',
  metrics_address: '',
  no_prometheus: false,
  mount_timeout_sec: 30,
  shutdown_timeout_sec: 30,
  prefetch_timeout_sec: 10,
  noprefetch: false,
  no_background_fetch: false,
  resolve_result_entry_ttl_sec: 120,
  max_concurrency: 2,
  // metadata workstream (issue #12): the daemon-wide and per-layer bounds on layer indexes.
  metadata_budget_mb: 2048,
  metadata_layer_budget_mb: 512,
  disable_verification: false,
  blob: Object.freeze({
    valid_interval: 60,
    check_always: false,
    chunk_size: 1_048_576,
    fetching_timeout_sec: 300,
    force_single_range_mode: false,
    max_retries: 5,
    min_wait_msec: 30,
    max_wait_msec: 300_000,
  }),
  cache: Object.freeze({
    dir: '',
    max_size_mb: 10_240,
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
} as const)

const C = CONFIG_DEFAULTS

/** What library modules use when their caller passes no option (derived from CONFIG_DEFAULTS). */
export const LIBRARY_DEFAULTS = Object.freeze({
  registry: Object.freeze({
    maxRetries: C.blob.max_retries,
    /**
     * 5xx/429 are retried until the request deadline ([blob] fetching_timeout_sec), max_retries
     * counts connection errors only: a burst or outage shorter than the deadline must not fail a
     * container's read (issue #17). No config key: the deadline is the knob.
     */
    retryStatusUntilDeadline: true,
    backoffBaseMs: C.blob.min_wait_msec,
    backoffMaxMs: C.blob.max_wait_msec,
    /**
     * [blob] fetching_timeout_sec bounds the whole request; a body silent for a third of it is cut
     * and retried, so one stalled connection costs part of the deadline, not all of it (issue #17:
     * a stall as long as the deadline left no time to retry). The daemon sets the same.
     */
    bodyTimeoutMs: Math.ceil((C.blob.fetching_timeout_sec * 1000) / 3),
    requestDeadlineMs: C.blob.fetching_timeout_sec * 1000,
  }),
  /**
   * Quiet period after the last on-demand read before background fetch resumes. No config key:
   * measured with `stargz bench`, 2 s covers the gaps between pull, create and start of a
   * container (background fetch during start-up cost python3 ~0.2 s at 500 ms).
   */
  backgroundGraceMs: 2000,
  backgroundConcurrency: C.max_concurrency,
  /** resolve_result_entry_ttl_sec: how long a resolved layer is kept after its last release. */
  layerTtlMs: C.resolve_result_entry_ttl_sec * 1000,
  prefetchTimeoutMs: C.prefetch_timeout_sec * 1000,
  fuse: Object.freeze({
    attrTimeoutSec: C.fuse.attr_timeout,
    entryTimeoutSec: C.fuse.entry_timeout,
  }),
  /**
   * Restore of remote snapshots at start-up (src/snapshot/snapshotter.ts startRestore), which runs
   * after the daemon is ready. No config keys: from a persisted layer record or stargz-fused a
   * mount takes milliseconds; with the registry needed, four at a time kept start-up under load
   * bounded. A failed layer is retried after 1 s, doubling to 60 s. Mounts/Prepare wait for a
   * restoring layer as long as a mount may take (mount_timeout_sec), then answer Unavailable.
   */
  restore: Object.freeze({
    concurrency: 4,
    retryBaseMs: 1000,
    retryMaxMs: 60_000,
    waitMs: C.mount_timeout_sec * 1000,
  }),
  cache: Object.freeze({
    /** [cache] max_size_mb. */
    diskBytes: C.cache.max_size_mb * MIB,
    /** The in-memory chunk LRU in front of the disk cache. No config key (see the migration table). */
    memoryBytes: 256 * MIB,
  }),
})
