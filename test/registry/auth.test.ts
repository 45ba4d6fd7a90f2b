import t from 'tap'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, gzipLayer, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/client.js'
import { DockerConfigCredentials, StaticCredentials } from '../../src/registry/credentials.js'
import { AuthError } from '../../src/registry/errors.js'
import { parseChallenges } from '../../src/registry/auth.js'

const work = await mkdtemp(join(tmpdir(), 'stargz-auth-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const hostsDir = join(work, 'certs.d')
const img = buildImage({ layers: [gzipLayer([{ name: 'f', data: Buffer.from('auth test\n') }])] })
const alice = { username: 'alice', password: 's3cret:with colon' }

async function failure(p: Promise<unknown>): Promise<Error> {
  return p.then(() => { throw new Error('expected a rejection') }, (e: unknown) => e as Error)
}

function newClient(t: { teardown(fn: () => unknown): void }, opts: Partial<RegistryClientOptions>): RegistryClient {
  const c = new RegistryClient({ plainHttp: true, hostsDir, credentials: new StaticCredentials({}), transport: { maxRetries: 1, backoffBaseMs: 1 }, ...opts })
  t.teardown(() => c.close())
  return c
}

t.test('WWW-Authenticate parsing', async (t) => {
  const [c, d] = parseChallenges([
    'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push repository:c:pull"',
    'Basic realm="x\\"y", charset=UTF-8',
  ])
  t.same(c, { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push repository:c:pull' } })
  t.same(d, { scheme: 'basic', params: { realm: 'x"y', charset: 'UTF-8' } })
  t.same(parseChallenges(['Bearer realm="r", Basic realm="b"']).map((x) => x.scheme), ['bearer', 'basic'])
})

t.test('htpasswd basic auth', async (t) => {
  const reg = await startRegistry({ htpasswd: [alice] })
  t.teardown(() => reg.close())
  const ref = `${reg.host}/basic/app:v1`
  const good = newClient(t, { credentials: new StaticCredentials({ [reg.host]: alice }) })
  const pushed = await good.pushImage(ref, img.config, img.layers)
  t.equal((await good.resolve(ref)).digest, pushed.digest, 'push and resolve with the right password')

  const wrong = newClient(t, { credentials: new StaticCredentials({ [reg.host]: { username: 'alice', password: 'nope' } }) })
  const e1 = await failure(wrong.resolve(ref))
  t.ok(e1 instanceof AuthError, 'wrong password is an AuthError')
  t.match(e1.message, /rejected the credentials for user "alice"/)
  t.notMatch(e1.message, /nope/, 'the password is not in the message')
  t.match(e1.message, new RegExp(`registry ${reg.host.replace(/\./g, '\\.')}, repository basic/app`))

  const none = newClient(t, {})
  const e2 = await failure(none.resolve(ref))
  t.ok(e2 instanceof AuthError)
  t.match(e2.message, /no credentials are configured/)
})

t.test('credentials from a Docker config: auths, credHelpers, missing credsStore', async (t) => {
  const reg = await startRegistry({ htpasswd: [alice] })
  t.teardown(() => reg.close())
  const ref = `${reg.host}/cfg/app:v1`
  const layout = join(work, 'cfg-layout')
  await writeOciLayout(layout, 'v1', [img])
  await skopeoPush(layout, 'v1', ref, { creds: alice })

  const cfgA = join(work, 'cfgA')
  await mkdir(cfgA, { recursive: true })
  await writeFile(join(cfgA, 'config.json'), JSON.stringify({ auths: { [`http://${reg.host}`]: { auth: Buffer.from(`${alice.username}:${alice.password}`).toString('base64') } } }))
  const a = newClient(t, { credentials: new DockerConfigCredentials({ env: { DOCKER_CONFIG: cfgA } }) })
  t.equal((await a.resolve(ref)).digest, img.manifestDigest, 'base64 auth entry keyed by URL')

  const bin = join(work, 'bin')
  await mkdir(bin, { recursive: true })
  const helper = join(bin, 'docker-credential-stargztest')
  // The helper checks it was asked about the right server before answering.
  await writeFile(helper, `#!/bin/sh\nread server\n[ "$1" = get ] && [ "$server" = "${reg.host}" ] || { echo "credentials not found in native keychain"; exit 1; }\nprintf '%s' '${JSON.stringify({ ServerURL: reg.host, Username: alice.username, Secret: alice.password })}'\n`)
  await chmod(helper, 0o755)
  const cfgB = join(work, 'cfgB')
  await mkdir(cfgB, { recursive: true })
  await writeFile(join(cfgB, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'stargztest' } }))
  const b = newClient(t, { credentials: new DockerConfigCredentials({ env: { DOCKER_CONFIG: cfgB, PATH: `${bin}:${process.env.PATH}` } }) })
  t.equal((await b.resolve(ref)).digest, img.manifestDigest, 'credential helper')

  const cfgC = join(work, 'cfgC')
  await mkdir(cfgC, { recursive: true })
  await writeFile(join(cfgC, 'config.json'), JSON.stringify({ credsStore: 'does-not-exist' }))
  const c = newClient(t, { credentials: new DockerConfigCredentials({ env: { DOCKER_CONFIG: cfgC, PATH: bin } }) })
  const e = await failure(c.resolve(ref))
  t.ok(e instanceof AuthError)
  t.match(e.message, /docker-credential-does-not-exist is not on PATH/)
})

t.test('token auth', async (t) => {
  const reg = await startRegistry({ token: { users: [alice], anonymousPull: true } })
  t.teardown(() => reg.close())
  const ts = reg.tokenServer
  if (!ts) throw new Error('no token server')
  const ref = `${reg.host}/tok/app:v1`
  let now = Date.now()
  const c = newClient(t, { credentials: new StaticCredentials({ [reg.host]: alice }), now: () => now })
  const pushed = await c.pushImage(ref, img.config, img.layers)
  t.ok(ts.scopes.some((s) => s.includes('repository:tok/app:pull,push')), 'push asked for pull,push scope')
  const r = await c.resolve(ref)
  t.equal(r.digest, pushed.digest)

  await t.test('tokens are cached until they expire, then fetched again', async (t) => {
    const before = ts.issued
    await c.resolve(ref)
    await c.resolve(ref)
    t.equal(ts.issued, before, 'no token fetch while the cached token is valid')
    now += 301_000
    await c.resolve(ref)
    t.equal(ts.issued, before + 1, 'one fresh token after expires_in passed')
  })

  await t.test('a token the registry refuses is refreshed on 401', async (t) => {
    const fresh = newClient(t, { credentials: new StaticCredentials({ [reg.host]: alice }) })
    ts.options.expiredFirst = 1
    const before = ts.issued
    t.equal((await fresh.resolve(ref)).digest, pushed.digest)
    t.equal(ts.options.expiredFirst, 0, 'the expired token was handed out')
    t.ok(ts.issued >= before + 2, 'and a second token replaced it')
  })

  await t.test('anonymous pull works; wrong credentials name the user and hide the password', async (t) => {
    const anon = newClient(t, {})
    t.equal((await anon.resolve(ref)).digest, pushed.digest)
    const wrong = newClient(t, { credentials: new StaticCredentials({ [reg.host]: { username: 'alice', password: 'bad-pass' } }) })
    const e = await failure(wrong.resolve(ref))
    t.ok(e instanceof AuthError)
    t.match(e.message, /token server .* refused access for user "alice" with HTTP 401/)
    t.notMatch(e.message, /bad-pass/)
    const anonPush = await failure(anon.pushImage(`${reg.host}/tok/other:v1`, img.config, img.layers))
    t.ok(anonPush instanceof AuthError, 'anonymous push is refused clearly')
  })
})
