/** Table-driven checks of the pure parts: locations, prioritized lists, document rewrites, cache keys. */
import t from 'tap'
import { conversionKey } from '../../src/convert/convert-cache.js'
import { defaultConvertCacheDir } from '../../src/convert/cache-dir.js'
import { rewriteConfig, rewriteIndex, rewriteManifest } from '../../src/convert/image-rewrite.js'
import { parseLocation } from '../../src/convert/location.js'
import { formatPrioritizedList, parsePrioritizedList, pathsForLayer } from '../../src/convert/prioritized-list.js'
import { parseCommand } from '../../src/cli/args.js'
import { spec as optimizeSpec } from '../../src/cli/commands/optimize.js'

const D1 = 'sha256:' + '1'.repeat(64)
const D2 = 'sha256:' + '2'.repeat(64)

t.test('parseLocation', async (t) => {
  const cases: Array<[string, 'source' | 'destination', unknown]> = [
    ['oci:/tmp/x:v1', 'source', { kind: 'oci', dir: '/tmp/x', tag: 'v1' }],
    ['oci:/tmp/x', 'source', { kind: 'oci', dir: '/tmp/x', tag: undefined }],
    ['127.0.0.1:5000/a/b:c', 'source', { kind: 'registry', ref: { registry: '127.0.0.1:5000', repository: 'a/b', tag: 'c' } }],
    ['docker://127.0.0.1:5000/a', 'destination', { kind: 'registry', ref: { tag: 'latest' } }],
  ]
  for (const [text, role, want] of cases) t.match(parseLocation(text, role), want, text)
  t.throws(() => parseLocation(`127.0.0.1:5000/a@${D1}`, 'destination'), { code: 'ERR_INVALID_ARGUMENT', message: /names a digest/ })
  t.throws(() => parseLocation('oci::v1', 'source'), { code: 'ERR_INVALID_ARGUMENT' })
  t.throws(() => parseLocation('oci:/x:-bad', 'source'), { code: 'ERR_INVALID_ARGUMENT', message: /tag/ })
})

t.test('prioritized lists', async (t) => {
  const recs = parsePrioritizedList([
    '/bin/sh',
    '',
    `{"path": "/etc/a", "layer": "${D1}"}`,
    '{"path": "/etc/b", "layerIndex": 1}',
    '/bin/sh',
  ].join('\n'), 'list')
  t.same(pathsForLayer(recs, D1, 0), ['/bin/sh', '/etc/a'], 'digest-scoped and unscoped, deduplicated')
  t.same(pathsForLayer(recs, D2, 1), ['/bin/sh', '/etc/b'], 'index-scoped')
  t.same(parsePrioritizedList(formatPrioritizedList(recs), 'x'), recs, 'round trip')
  t.throws(() => parsePrioritizedList('{"path": 3}', 'list'), { code: 'ERR_INVALID_ARGUMENT', message: /list line 1/ })
  t.throws(() => parsePrioritizedList('/ok\n{oops', 'list'), { message: /list line 2: not valid JSON/ })
  t.throws(() => parsePrioritizedList('{"path":"/a","layer":"nope"}', 'list'), { message: /"layer" must be a digest/ })
})

t.test('document rewrites keep what they do not change', async (t) => {
  const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', config: { Env: ['A=1'] }, rootfs: { type: 'layers', diff_ids: [D1] }, history: [{ created_by: 'x' }] }))
  const out = JSON.parse(rewriteConfig(cfg, [D2], 'img').toString()) as Record<string, unknown>
  t.same(out, { architecture: 'amd64', config: { Env: ['A=1'] }, rootfs: { type: 'layers', diff_ids: [D2] }, history: [{ created_by: 'x' }] })
  t.throws(() => rewriteConfig(cfg, [D1, D2], 'img'), { message: /1 diff_ids but the manifest has 2 layers/ })
  const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: {}, layers: [], annotations: { a: 'b' }, subject: { digest: D1 } }))
  const layer = { mediaType: 'x', digest: D2, size: 1 }
  const oci = JSON.parse(rewriteManifest(m, 'oci', { mediaType: 'c', digest: D1, size: 2 }, [layer]).bytes.toString()) as Record<string, unknown>
  t.match(oci, { mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json' }, annotations: { a: 'b' }, subject: { digest: D1 } })
  const docker = JSON.parse(rewriteManifest(m, 'docker', { mediaType: 'c', digest: D1, size: 2 }, [layer]).bytes.toString()) as Record<string, unknown>
  t.equal(docker.mediaType, 'application/vnd.docker.distribution.manifest.v2+json')
  t.notOk('subject' in docker, 'Docker schema 2 has no subject')
  const ix = JSON.parse(rewriteIndex(Buffer.from('{"schemaVersion":2,"manifests":[],"annotations":{"k":"v"}}'), 'docker', []).bytes.toString()) as Record<string, unknown>
  t.same(ix, { schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json', manifests: [], annotations: { k: 'v' } })
})

t.test('conversion keys and cache dir', async (t) => {
  t.equal(conversionKey(D1, {}), conversionKey(D1, { prioritizedFiles: [] }), 'no priorities is no priorities')
  t.not(conversionKey(D1, {}), conversionKey(D2, {}))
  t.not(conversionKey(D1, { chunkSize: 1 }), conversionKey(D1, {}))
  t.not(conversionKey(D1, { prioritizedFiles: ['/a', '/b'] }), conversionKey(D1, { prioritizedFiles: ['/b', '/a'] }), 'order matters')
  t.equal(defaultConvertCacheDir({}, 0), '/var/cache/stargz/convert')
  t.equal(defaultConvertCacheDir({ XDG_CACHE_HOME: '/x' }, 1000), '/x/stargz/convert')
})

t.test('repeated --env flags', async (t) => {
  const a = parseCommand(['a', '--env', 'A=1', '--env=B=2', 'b', '--', '--env', 'C'], optimizeSpec)
  t.same(a.flags.get('env'), ['A=1', 'B=2'])
  t.same(a.positionals, ['a', 'b'])
  t.same(a.rest, ['--env', 'C'])
  t.throws(() => parseCommand(['--env'], optimizeSpec), { code: 'ERR_INVALID_ARGUMENT', name: 'UsageError' })
})
