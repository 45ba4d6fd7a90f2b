/**
 * Load, validate and freeze the configuration: TOML file (smol-toml) → defaults for what is
 * missing → command-line overrides → checks that name the offending key. Unknown keys are errors
 * (a typo must not silently fall back to a default). A missing file is an error unless it is the
 * default path.
 */
import { readFile } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { ConfigError } from '../errors.js'
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

/** Validate a parsed TOML document (plus overrides) into a frozen Config. */
export function buildConfig(doc: Record<string, unknown>, overrides: Overrides = {}): Readonly<Config> {
  const out: Record<string, unknown> = {}
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
      if (!(key in keys)) throw new ConfigError(`${section}.${key}`, 'unknown key')
    }
    out[section] = Object.freeze(sec)
  }
  for (const key of Object.keys(doc)) {
    if (!(key in TOP_KEYS) && !(key in SECTION_KEYS)) throw new ConfigError(key, 'unknown key')
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
  return Object.freeze(cfg)
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
