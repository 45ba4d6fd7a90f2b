/**
 * A reference (containerd-stargz-grpc) config.toml loads: every reference key is accepted, with
 * one warning per key stargzd does not implement; wrong types and unknown keys are still errors.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { parseConfigText, configWarnings } from '../../src/config/load.js'
import { SECTION_KEYS, TOP_KEYS } from '../../src/config/schema.js'
import { REFERENCE_SECTION_KEYS, REFERENCE_TOP_KEYS } from '../../src/config/reference.js'

const fixture = (name: string): Promise<string> => readFile(new URL(`../fixtures/reference-config/${name}`, import.meta.url), 'utf8')

/** Every reference key the fixture holds that is not native, as "section.key". */
function referenceOnlyKeys(): string[] {
  const out: string[] = []
  for (const k of Object.keys(REFERENCE_TOP_KEYS)) if (!(k in TOP_KEYS)) out.push(k)
  for (const [s, keys] of Object.entries(REFERENCE_SECTION_KEYS)) {
    const native = (SECTION_KEYS as Record<string, Record<string, unknown>>)[s]
    for (const k of Object.keys(keys)) if (!native || !(k in native)) out.push(`${s}.${k}`)
  }
  return out.sort()
}

t.test('every key of the reference config loads; one warning for each key not implemented', async (t) => {
  const cfg = parseConfigText(await fixture('all-keys.toml'), 'all-keys.toml')
  const warned = configWarnings(cfg).map((w) => w.key).sort()
  t.same(warned, referenceOnlyKeys(), 'exactly the reference-only keys warn')
  t.equal(new Set(warned).size, warned.length, 'once each')
  for (const w of configWarnings(cfg)) t.ok(w.instead.length > 10, `${w.key} says what we do instead`)
  // Shared keys are read as ours.
  t.equal(cfg.fuse.entry_timeout, 1)
  t.equal(cfg.blob.chunk_size, 50000)
  t.equal(cfg.resolve_result_entry_ttl_sec, 120)
})

t.test('the reference sample and its docs examples load', async (t) => {
  for (const name of ['sample.toml', 'docs-examples.toml']) {
    const cfg = parseConfigText(await fixture(name), name)
    t.ok(cfg.root.length > 0, `${name}: a config`)
  }
  const docs = configWarnings(parseConfigText(await fixture('docs-examples.toml'), 'docs-examples.toml')).map((w) => w.key)
  t.ok(docs.includes('resolver.host'), 'mirrors warn: we take them from hosts.toml')
  t.ok(docs.includes('kubeconfig_keychain.enable_keychain'))
})

t.test('a config with no reference-only keys has no warnings', async (t) => {
  t.same(configWarnings(parseConfigText('noprefetch = true\n[blob]\nmax_retries = 3\n', 'x.toml')), [])
})

const invalid: [string, RegExp][] = [
  // Unknown keys are still errors, also inside reference sections.
  ['prefetch_sise = 1', /config key prefetch_sise: unknown key/],
  ['[directory_cache]\nmax_lru_cache_entries = 3', /config key directory_cache.max_lru_cache_entries: unknown key/],
  ['[fuse]\npasstrough = true', /config key fuse.passtrough: unknown key/],
  ['[resolver.host."r.io"]\nmirror = []', /config key resolver.host."r.io".mirror: unknown key/],
  ['[[resolver.host."r.io".mirrors]]\nhots = "x"', /resolver.host."r.io".mirrors.hots: unknown key/],
  // The reference's types.
  ['prefetch_size = "1MB"', /config key prefetch_size: expected an integer \(as in the reference's config\)/],
  ['[cri_keychain]\nenable_keychain = "yes"', /config key cri_keychain.enable_keychain: expected true or false/],
  ['[[resolver.host."r.io".mirrors]]\ninsecure = 1', /mirrors.insecure: expected true or false/],
  ['directory_cache = 3', /config key directory_cache: expected a table/],
]

t.test('typos and wrong types are errors that name the key', async (t) => {
  for (const [text, re] of invalid) t.throws(() => parseConfigText(text, 'test.toml'), { code: 'ERR_CONFIG_INVALID', message: re }, text)
})
