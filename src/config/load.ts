/**
 * Load, validate and freeze the configuration: TOML file (smol-toml) → defaults for what is
 * missing → command-line overrides → checks that name the offending key. Unknown keys are errors
 * (a typo must not silently fall back to a default), except the reference's keys that we do not
 * implement (./reference.ts): those are accepted and come back from configWarnings(). A missing file is an error unless it is the
 * default path.
 */
import { readFile } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { ConfigError } from '../errors.js'
import { REFERENCE_SECTION_KEYS, REFERENCE_TOP_KEYS, type ReferenceKey } from './reference.js'
import { DEFAULT_CONFIG_PATH, DEFAULTS, SECTION_KEYS, TOP_KEYS, type Config, type KeySpec, type Section } from './schema.js'

export { ConfigError }

export interface Overrides {
  address?: string | undefined
  root?: string | undefined
  log_level?: string | undefined
  hosts_dir?: string | undefined
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array'
  if (v instanceof Date) return 'a date'
  if (v === null) return 'null'
  return `${typeof v} ${JSON.stringify(v)}`
}

function checkValue(key: string, spec: KeySpec, v: unknown): unknown {
  switch (spec.type) {
    case 'bool':
      if (typeof v !== 'boolean') throw new ConfigError(key, `expected true or false, got ${describe(v)}`)
      return v
    case 'int': {
      const n = typeof v === 'bigint' ? Number(v) : v
      if (typeof n !== 'number' || !Number.isInteger(n)) throw new ConfigError(key, `expected an integer, got ${describe(v)}`)
      if (n < spec.min || (spec.max !== undefined && n > spec.max)) {
        throw new ConfigError(key, `${n} is out of range [${spec.min}, ${spec.max ?? '∞'}]`)
      }
      return n
    }
    case 'enum':
      if (typeof v !== 'string' || !spec.values.includes(v)) throw new ConfigError(key, `expected one of ${spec.values.join(', ')}, got ${describe(v)}`)
      return v
    case 'string':
      if (typeof v !== 'string') throw new ConfigError(key, `expected a string, got ${describe(v)}`)
      if (v === '' && !spec.allowEmpty) throw new ConfigError(key, 'must not be empty')
      if (v !== '' && spec.absolute && !isAbsolute(v)) throw new ConfigError(key, `must be an absolute path, got ${JSON.stringify(v)}`)
      return v
  }
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date)
}

/** A reference key that was accepted but is not implemented: the daemon logs each once at start. */
export interface ConfigWarning {
  /** "prefetch_size", "directory_cache.max_lru_cache_entry", ... */
  key: string
  /** What stargzd does instead. */
  instead: string
}

const WARNINGS = new WeakMap<object, readonly ConfigWarning[]>()

/** The reference keys `cfg` was built with that stargzd does not implement (empty for most configs). */
export function configWarnings(cfg: Readonly<Config>): readonly ConfigWarning[] {
  return WARNINGS.get(cfg) ?? []
}

function checkReference(key: string, ref: ReferenceKey, v: unknown): void {
  const bad = (what: string): never => { throw new ConfigError(key, `expected ${what} (as in the reference's config), got ${describe(v)}`) }
  switch (ref.type) {
    case 'bool': if (typeof v !== 'boolean') bad('true or false'); return
    case 'int': if (!(typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v)))) bad('an integer'); return
    case 'string': if (typeof v !== 'string') bad('a string'); return
    case 'header': if (!isTable(v)) bad('a table of header names'); return
    case 'resolver-hosts': {
      // [[resolver.host."registry".mirrors]] host, insecure, request_timeout_sec, [..header]
      if (!isTable(v)) bad('a table of registry hosts')
      for (const [host, hv] of Object.entries(v as Record<string, unknown>)) {
        const where = `${key}.${JSON.stringify(host)}`
        if (!isTable(hv)) throw new ConfigError(where, `expected a table, got ${describe(hv)}`)
        for (const k of Object.keys(hv)) if (k !== 'mirrors') throw new ConfigError(`${where}.${k}`, 'unknown key')
        const mirrors = hv.mirrors
        if (mirrors === undefined) continue
        if (!Array.isArray(mirrors)) throw new ConfigError(`${where}.mirrors`, `expected an array of tables, got ${describe(mirrors)}`)
        for (const m of mirrors) {
          if (!isTable(m)) throw new ConfigError(`${where}.mirrors`, `expected an array of tables, got an element ${describe(m)}`)
          for (const [mk, mv] of Object.entries(m)) {
            const mirror = MIRROR_KEYS[mk]
            if (!mirror) throw new ConfigError(`${where}.mirrors.${mk}`, 'unknown key')
            checkReference(`${where}.mirrors.${mk}`, mirror, mv)
          }
        }
      }
    }
  }
}

const MIRROR_KEYS: Readonly<Record<string, ReferenceKey>> = {
  host: { type: 'string', instead: '' },
  insecure: { type: 'bool', instead: '' },
  request_timeout_sec: { type: 'int', instead: '' },
  header: { type: 'header', instead: '' },
}

/**
 * Validate a parsed TOML document (plus overrides) into a frozen Config. Keys of the reference's
 * config that stargzd does not implement are accepted and reported by configWarnings(); any other
 * unknown key is an error.
 */
export function buildConfig(doc: Record<string, unknown>, overrides: Overrides = {}): Readonly<Config> {
  const out: Record<string, unknown> = {}
  const warnings: ConfigWarning[] = []
  const warn = (key: string, ref: ReferenceKey, v: unknown): void => {
    checkReference(key, ref, v)
    warnings.push({ key, instead: ref.instead })
  }
  for (const [key, spec] of Object.entries(TOP_KEYS)) {
    const v = doc[key]
    out[key] = v === undefined ? DEFAULTS[key as keyof typeof TOP_KEYS] : checkValue(key, spec, v)
  }
  for (const [section, keys] of Object.entries(SECTION_KEYS) as [Section, Record<string, KeySpec>][]) {
    const raw = doc[section]
    if (raw !== undefined && !isTable(raw)) throw new ConfigError(section, `expected a table [${section}], got ${describe(raw)}`)
    const table = raw ?? {}
    const defaults = DEFAULTS[section] as unknown as Record<string, unknown>
    const sec: Record<string, unknown> = {}
    for (const [key, spec] of Object.entries(keys)) {
      const v = table[key]
      sec[key] = v === undefined ? defaults[key] : checkValue(`${section}.${key}`, spec, v)
    }
    for (const key of Object.keys(table)) {
      if (key in keys) continue
      const ref = REFERENCE_SECTION_KEYS[section]?.[key]
      if (!ref) throw new ConfigError(`${section}.${key}`, 'unknown key')
      warn(`${section}.${key}`, ref, table[key])
    }
    out[section] = Object.freeze(sec)
  }
  for (const [key, v] of Object.entries(doc)) {
    if (key in TOP_KEYS || key in SECTION_KEYS) continue
    const ref = REFERENCE_TOP_KEYS[key]
    if (ref) { warn(key, ref, v); continue }
    const refSection = REFERENCE_SECTION_KEYS[key]
    if (!refSection) throw new ConfigError(key, 'unknown key')
    if (!isTable(v)) throw new ConfigError(key, `expected a table [${key}], got ${describe(v)}`)
    for (const [sub, sv] of Object.entries(v)) {
      const r = refSection[sub]
      if (!r) throw new ConfigError(`${key}.${sub}`, 'unknown key')
      warn(`${key}.${sub}`, r, sv)
    }
  }
  for (const [key, v] of Object.entries(overrides)) {
    if (v === undefined) continue
    const spec = TOP_KEYS[key as keyof typeof TOP_KEYS]
    out[key] = checkValue(`--${key.replace(/_/g, '-')}`, spec, v)
  }
  const cfg = out as unknown as Config
  if (cfg.blob.min_wait_msec > cfg.blob.max_wait_msec) {
    throw new ConfigError('blob.min_wait_msec', `${cfg.blob.min_wait_msec} is greater than blob.max_wait_msec (${cfg.blob.max_wait_msec})`)
  }
  if (cfg.metrics_address !== '' && !cfg.metrics_address.startsWith('/') && !/^(\[[^\]]+\]|[^:]*):\d{1,5}$/.test(cfg.metrics_address)) {
    throw new ConfigError('metrics_address', `expected host:port or an absolute socket path, got ${JSON.stringify(cfg.metrics_address)}`)
  }
  const frozen = Object.freeze(cfg)
  if (warnings.length > 0) WARNINGS.set(frozen, Object.freeze(warnings))
  return frozen
}

export function parseConfigText(text: string, source: string, overrides: Overrides = {}): Readonly<Config> {
  let doc: Record<string, unknown>
  try {
    doc = parseToml(text) as Record<string, unknown>
  } catch (e) {
    throw new ConfigError('', `${source}: invalid TOML: ${(e as Error).message}`, { cause: e })
  }
  return buildConfig(doc, overrides)
}

export async function loadConfig(path: string | undefined, overrides: Overrides = {}): Promise<Readonly<Config>> {
  const file = path ?? DEFAULT_CONFIG_PATH
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && file === DEFAULT_CONFIG_PATH) return buildConfig({}, overrides)
    throw new ConfigError('', `cannot read config file ${file}: ${(e as Error).message}`, { cause: e })
  }
  return parseConfigText(text, file, overrides)
}

/** The cache directory: [cache] dir, or <root>/cache when empty. */
export function cacheDir(cfg: Config): string {
  return cfg.cache.dir === '' ? join(cfg.root, 'cache') : cfg.cache.dir
}
