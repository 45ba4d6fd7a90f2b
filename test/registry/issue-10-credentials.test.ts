/**
 * Issue #10 §4, credentials: one regression test per finding, against real docker-registry
 * instances (htpasswd and token auth, plain HTTP and TLS). Each failed before its fix.
 */
import t from 'tap'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { buildImage, gzipLayer } from '../../harness/image.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials, type Credential } from '../../src/registry/credentials.js'
import { AuthError } from '../../src/registry/errors.js'

const work = await mkdtemp(join(tmpdir(), 'stargz-i10-creds-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const img = buildImage({ layers: [gzipLayer([{ name: 'f', data: Buffer.from('credentials\n') }])] })
const upstreamUser = { username: 'upstream-user', password: 'upstream-secret' }
const mirrorUser = { username: 'mirror-user', password: 'mirror-secret' }
const basic = (c: { username: string; password: string }): string => 'Basic ' + Buffer.from(`${c.username}:${c.password}`).toString('base64')

async function hostsToml(name: string, registry: string, body: string): Promise<string> {
  const dir = join(work, name)
  await mkdir(join(dir, registry), { recursive: true })
  await writeFile(join(dir, registry, 'hosts.toml'), body)
  return dir
}

function newClient(t: { teardown(fn: () => unknown): void }, hostsDir: string, creds: Record<string, Credential>, plainHttp = false): RegistryClient {
  const c = new RegistryClient({ hostsDir, plainHttp, credentials: new StaticCredentials(creds), transport: { maxRetries: 0 } })
  t.teardown(() => c.close())
  return c
}

t.test('mirror-gets-upstream-credentials: a hosts.toml mirror is sent only its own credentials', async (t) => {
  const upstream = await startRegistry({ htpasswd: [upstreamUser] })
  t.teardown(() => upstream.close())
  // A plain-HTTP mirror that answers 401 Basic; the proxy records what it was sent.
  const mirror = await startRegistry({ htpasswd: [mirrorUser] })
  t.teardown(() => mirror.close())
  const mirrorProxy = await startFaultProxy(mirror.url)
  t.teardown(() => mirrorProxy.close())
  const dir = await hostsToml('mirror', upstream.host, `server = "http://${upstream.host}"\n[host."http://${mirrorProxy.host}"]\n  capabilities = ["pull", "resolve"]\n`)
  const ref = `${upstream.host}/creds/app:v1`
  const pushed = await newClient(t, dir, { [upstream.host]: upstreamUser }).pushImage(ref, img.config, img.layers)

  // Only upstream credentials configured: the mirror refuses us, the upstream serves us.
  const c = newClient(t, dir, { [upstream.host]: upstreamUser })
  t.equal((await c.resolve(ref)).digest, pushed.digest, 'resolved through the upstream')
  t.ok(mirrorProxy.log.length > 0, 'the mirror was tried first')
  t.notOk(mirrorProxy.log.some((l) => l.headers.authorization === basic(upstreamUser)), 'the mirror never saw the upstream password')
  t.notOk(mirrorProxy.log.some((l) => l.headers.authorization !== undefined), 'the mirror got no credentials at all')

  // Credentials for the mirror's own host are what the mirror gets.
  await newClient(t, join(work, 'none'), { [mirror.host]: mirrorUser }, true)
    .pushImage(`${mirror.host}/creds/app:v1`, img.config, img.layers)
  mirrorProxy.clearLog()
  const both = newClient(t, dir, { [upstream.host]: upstreamUser, [mirrorProxy.host]: mirrorUser })
  t.equal((await both.resolve(ref)).digest, pushed.digest, 'resolved through the mirror')
  const sent = mirrorProxy.log.map((l) => l.headers.authorization).filter((a) => a !== undefined)
  t.ok(sent.length > 0 && sent.every((a) => a === basic(mirrorUser)), 'the mirror got its own credentials, and only those')
})

t.test('token-realm-over-http: a plain-http token realm is refused for an https registry', async (t) => {
  const reg = await startRegistry({ tls: true, token: { users: [upstreamUser], anonymousPull: true } })
  t.teardown(() => reg.close())
  const ts = reg.tokenServer
  if (!ts) throw new Error('no token server')
  t.match(ts.realm, /^http:\/\//, 'the test registry hands out an http realm')
  const caPath = join(work, 'token-ca.pem')
  await writeFile(caPath, reg.caPem ?? '')
  const dir = await hostsToml('token', reg.host, `server = "https://${reg.host}"\nca = "${caPath}"\n`)
  const c = newClient(t, dir, { [reg.host]: upstreamUser })
  const e = await c.resolve(`${reg.host}/tok/app:v1`).then(() => undefined, (err: unknown) => err as Error)
  t.ok(e instanceof AuthError, `an AuthError (got ${e?.name}: ${e?.message})`)
  t.match(e?.message, /token realm http:\/\/127\.0\.0\.1:\d+\/token is plain http for the https registry endpoint/)
  t.notMatch(e?.message, /upstream-secret/)
  t.equal(ts.issued + ts.refused, 0, 'the token server was never asked (no password sent in clear)')
})
