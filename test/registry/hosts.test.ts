import t from 'tap'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry } from '../../harness/registry.js'
import { droppingPort } from '../../harness/ports.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { buildImage, gzipLayer } from '../../harness/image.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { loadEndpoints } from '../../src/registry/hosts.js'
import { FetchError } from '../../src/registry/errors.js'
import { InvalidArgumentError } from '../../src/errors.js'

const work = await mkdtemp(join(tmpdir(), 'stargz-hosts-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const server = await startRegistry()
t.teardown(() => server.close())
const mirrorReg = await startRegistry()
t.teardown(() => mirrorReg.close())
const mirror = await startFaultProxy(mirrorReg.url)
t.teardown(() => mirror.close())

const onServer = buildImage({ layers: [gzipLayer([{ name: 'a', data: Buffer.from('server only') }])] })
const onMirror = buildImage({ layers: [gzipLayer([{ name: 'a', data: Buffer.from('mirror only') }])] })

function client(t: { teardown(fn: () => unknown): void }, hostsDir: string, extra: { insecure?: boolean; plainHttp?: boolean } = {}): RegistryClient {
  const c = new RegistryClient({ hostsDir, credentials: new StaticCredentials({}), transport: { maxRetries: 0 }, ...extra })
  t.teardown(() => c.close())
  return c
}

const seed = client(t, join(work, 'none'), { plainHttp: true })
await seed.pushImage(`${server.host}/app/x:v1`, onServer.config, onServer.layers)
await seed.pushImage(`${mirrorReg.host}/app/x:mirrored`, onMirror.config, onMirror.layers)

async function hostsToml(name: string, registry: string, text: string): Promise<string> {
  const dir = join(work, name)
  await mkdir(join(dir, registry), { recursive: true })
  await writeFile(join(dir, registry, 'hosts.toml'), text)
  return dir
}

t.test('mirror first with its headers, falling back to the server', async (t) => {
  const dir = await hostsToml('mirror', server.host, `
server = "http://${server.host}"
[host."http://${mirror.host}"]
  capabilities = ["pull", "resolve"]
  [host."http://${mirror.host}".header]
    x-mirror-token = "abc"
    x-multi = ["1", "2"]
`)
  const c = client(t, dir)
  mirror.clearLog()
  const fromMirror = await c.resolve(`${server.host}/app/x:mirrored`)
  t.equal(fromMirror.digest, onMirror.manifestDigest, 'served by the mirror although the server lacks the tag')
  t.ok(mirror.log.length > 0)
  for (const l of mirror.log) {
    t.equal(l.headers['x-mirror-token'], 'abc', `${l.method} ${l.path} carries the configured header`)
    t.equal(l.headers['x-multi'], '1, 2')
    t.match(l.query, new RegExp(`ns=${encodeURIComponent(server.host)}`), 'and ns=<registry>')
  }
  mirror.clearLog()
  const fallback = await c.resolve(`${server.host}/app/x:v1`)
  t.equal(fallback.digest, onServer.manifestDigest, 'mirror 404 → server')
  t.equal(mirror.log[0]?.status, 404)
})

t.test('an unreachable mirror falls back to the server', async (t) => {
  const drop = await droppingPort()
  t.teardown(() => drop.close())
  const dead = drop.address
  const dir = await hostsToml('dead', server.host, `server = "http://${server.host}"\n[host."http://${dead}"]\n  capabilities = ["pull", "resolve"]\n`)
  t.equal((await client(t, dir).resolve(`${server.host}/app/x:v1`)).digest, onServer.manifestDigest)
})

t.test('TLS: ca from hosts.toml, clear error without it, --insecure skips verification', async (t) => {
  const tls = await startRegistry({ tls: true })
  t.teardown(() => tls.close())
  const caDir = join(work, 'tls-ca')
  await mkdir(caDir, { recursive: true })
  await writeFile(join(caDir, 'ca.pem'), tls.caPem ?? '')
  const dir = await hostsToml('tls', tls.host, `server = "https://${tls.host}"\nca = "${join(caDir, 'ca.pem')}"\n`)
  const withCa = client(t, dir)
  const pushed = await withCa.pushImage(`${tls.host}/app/x:v1`, onServer.config, onServer.layers)
  t.equal((await withCa.resolve(`${tls.host}/app/x:v1`)).digest, pushed.digest)
  const e = await client(t, join(work, 'none')).resolve(`${tls.host}/app/x:v1`).then(() => undefined, (err: unknown) => err as Error)
  t.ok(e instanceof FetchError)
  t.match(e?.message, /TLS error talking to 127\.0\.0\.1:\d+: .*--insecure/)
  t.equal((await client(t, join(work, 'none'), { insecure: true }).resolve(`${tls.host}/app/x:v1`)).digest, pushed.digest)
})

t.test('hosts.toml parsing', async (t) => {
  const certDir = join(work, 'parse-certs')
  await mkdir(certDir, { recursive: true })
  await writeFile(join(certDir, 'c.pem'), 'CERT')
  await writeFile(join(certDir, 'k.pem'), 'KEY')
  const dir = await hostsToml('parse', 'reg.example:5000', `
server = "https://reg.example:5000"
capabilities = ["pull", "resolve", "push"]
[header]
  x-top = "t"
[host."mirror.example/custom/path"]
  override_path = true
  skip_verify = true
  client = [["${join(certDir, 'c.pem')}", "${join(certDir, 'k.pem')}"]]
[host."https://m2.example/prefix"]
  capabilities = ["pull"]
`)
  const eps = await loadEndpoints('reg.example:5000', { hostsDir: dir })
  t.same(eps.map((e) => e.base.href), ['https://mirror.example/custom/path', 'https://m2.example/prefix/v2', 'https://reg.example:5000/v2'])
  t.same(eps.map((e) => [...e.capabilities].sort()), [['pull', 'resolve'], ['pull'], ['pull', 'push', 'resolve']])
  t.equal(eps[0]?.tls?.skipVerify, true)
  t.equal(eps[0]?.tls?.cert?.toString(), 'CERT')
  t.equal(eps[0]?.tls?.key?.toString(), 'KEY')
  t.same(eps[2]?.headers, { 'x-top': 't' })
  t.same(eps.map((e) => e.isMirror), [true, true, false])

  const plain = await loadEndpoints('other.example', { hostsDir: dir, plainHttp: true })
  t.same(plain.map((e) => e.base.href), ['http://other.example/v2'], 'no hosts.toml: default server, plain http')
  const hub = await loadEndpoints('docker.io', { hostsDir: dir })
  t.same(hub.map((e) => e.base.href), ['https://registry-1.docker.io/v2'])
  const insecure = await loadEndpoints('other.example', { hostsDir: dir, insecure: true })
  t.same(insecure.map((e) => [e.base.href, e.tls?.skipVerify]), [['https://other.example/v2', true], ['http://other.example/v2', undefined]])

  const bad = await hostsToml('bad', 'bad.example', `[host."https://m"]\n  capabilities = ["pull", "fly"]\n`)
  const e = await loadEndpoints('bad.example', { hostsDir: bad }).then(() => undefined, (err: unknown) => err as Error)
  t.ok(e instanceof InvalidArgumentError)
  t.match(e?.message, /bad\.example\/hosts\.toml: host\."https:\/\/m"\.capabilities: unknown capability "fly"/)
  const broken = await hostsToml('broken', 'broken.example', `server = [`)
  t.match((await loadEndpoints('broken.example', { hostsDir: broken }).then(() => undefined, (err: unknown) => err as Error))?.message, /broken\.example\/hosts\.toml: invalid TOML/)
})
