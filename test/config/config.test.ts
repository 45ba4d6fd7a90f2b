import t from 'tap'
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'smol-toml'
import { buildConfig, loadConfig, parseConfigText } from '../../src/config/load.js'
import { DEFAULTS } from '../../src/config/schema.js'

t.test('defaults', async (t) => {
  const c = buildConfig({})
  t.same(c, DEFAULTS)
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.blob), 'frozen')
})

t.test('config/config.toml documents every key with its default', async (t) => {
  const text = await readFile(new URL('../../config/config.toml', import.meta.url), 'utf8')
  // Every key is written out (uncommented) with its default value.
  t.same(parse(text), JSON.parse(JSON.stringify(DEFAULTS)))
})

const invalid: [string, RegExp][] = [
  ['log_level = "loud"', /config key log_level: expected one of/],
  ['root = "relative/dir"', /config key root: must be an absolute path/],
  ['mount_timeout_sec = 0', /config key mount_timeout_sec: 0 is out of range/],
  ['mount_timeout_sec = "10"', /config key mount_timeout_sec: expected an integer, got string/],
  ['noprefetch = 1', /config key noprefetch: expected true or false/],
  ['no_prefetch = true', /config key no_prefetch: unknown key/],
  ['[blob]\nmax_retries = -1', /config key blob.max_retries: -1 is out of range/],
  ['[blob]\nmax_retry = 3', /config key blob.max_retry: unknown key/],
  ['[blob]\nmin_wait_msec = 10\nmax_wait_msec = 5', /config key blob.min_wait_msec: 10 is greater than blob.max_wait_msec/],
  ['blob = 3', /config key blob: expected a table/],
  ['metrics_address = "localhost"', /config key metrics_address: expected host:port/],
  ['address = ', /invalid TOML/],
]

t.test('validation errors name the key', async (t) => {
  for (const [text, re] of invalid) t.throws(() => parseConfigText(text, 'test.toml'), { code: 'ERR_CONFIG_INVALID', message: re }, text)
})

t.test('overrides and file loading', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sgd-cfg-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'c.toml')
  await writeFile(file, 'root = "/a"\nmetrics_address = "127.0.0.1:0"\n[blob]\nmax_retries = 7\n')
  const c = await loadConfig(file, { root: '/b', log_level: 'debug' })
  t.equal(c.root, '/b', 'command line wins')
  t.equal(c.log_level, 'debug')
  t.equal(c.blob.max_retries, 7)
  t.equal(c.blob.chunk_size, DEFAULTS.blob.chunk_size)
  await t.rejects(loadConfig(join(dir, 'missing.toml')), { code: 'ERR_CONFIG_INVALID', message: /cannot read config file/ })
  await t.rejects(loadConfig(file, { log_level: 'nope' }), { message: /--log-level/ })
})
