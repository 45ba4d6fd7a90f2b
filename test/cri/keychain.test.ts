/** CriKeychain: what each AuthConfig shape yields, lookup by registry host, expiry, bounds, chain. */
import t from 'tap'
import { ChainedCredentials, CriKeychain, credentialFromAuthConfig } from '../../src/cri/keychain.js'
import { StaticCredentials } from '../../src/registry/credentials.js'

t.test('AuthConfig shapes', async (t) => {
  const b64 = Buffer.from('u:p:with:colons').toString('base64')
  const cases: [string, Parameters<typeof credentialFromAuthConfig>[0], unknown][] = [
    ['username + password', { username: 'u', password: 'p' }, { username: 'u', password: 'p' }],
    ['auth (base64 user:pass), colons kept in the password', { auth: b64 }, { username: 'u', password: 'p:with:colons' }],
    ['identity token', { identity_token: 'rt', username: 'u' }, { identityToken: 'rt', username: 'u' }],
    ['username without password', { username: 'u', password: '' }, undefined],
    ['registry_token only (not used)', { registry_token: 'x' }, undefined],
    ['auth that is not user:pass', { auth: Buffer.from('nocolon').toString('base64') }, undefined],
    ['empty', {}, undefined],
    ['absent', null, undefined],
  ]
  for (const [name, input, want] of cases) t.same(credentialFromAuthConfig(input), want, name)
})

t.test('lookup by host, newest pull wins, entries expire', async (t) => {
  let now = 1_000
  const kc = new CriKeychain({ ttlMs: 10_000, now: () => now })
  t.equal(kc.remember('127.0.0.1:5000/a/app:1', { username: 'a', password: '1' }), true)
  t.equal(kc.remember('127.0.0.1:5000/b/app:1', {}), false, 'a pull without credentials keeps nothing')
  t.same(await kc.get('127.0.0.1:5000'), { username: 'a', password: '1' })
  t.equal(await kc.get('127.0.0.1:5001'), undefined, 'another host (port) gets nothing')
  now += 5_000
  kc.remember('127.0.0.1:5000/b/app:2', { username: 'b', password: '2' })
  t.same(await kc.get('127.0.0.1:5000'), { username: 'b', password: '2' }, 'the newest pull for the host answers')
  kc.remember('busybox', { username: 'hub', password: 'h' })
  t.same(await kc.get('docker.io'), { username: 'hub', password: 'h' }, 'Docker Hub short names are keyed under docker.io')
  now += 6_000
  t.same(await kc.get('127.0.0.1:5000'), { username: 'b', password: '2' }, 'the first entry expired, the second is live')
  t.same(kc.references().sort(), ['127.0.0.1:5000/b/app:2', 'busybox'])
  now += 10_000
  t.equal(await kc.get('127.0.0.1:5000'), undefined, 'all expired')
  t.throws(() => kc.remember('Not A Ref!', { username: 'x', password: 'y' }), /invalid image reference/)
})

t.test('bounded: the least recently pulled go first', async (t) => {
  const kc = new CriKeychain({ ttlMs: 60_000, maxEntries: 2 })
  kc.remember('r1.example/a:1', { username: '1', password: 'x' })
  kc.remember('r2.example/a:1', { username: '2', password: 'x' })
  kc.remember('r1.example/a:1', { username: '1b', password: 'x' }) // refreshes r1
  kc.remember('r3.example/a:1', { username: '3', password: 'x' })
  t.same(kc.references().sort(), ['r1.example/a:1', 'r3.example/a:1'])
  t.equal(await kc.get('r2.example'), undefined)
})

t.test('chain: keychain first, then the next provider', async (t) => {
  const kc = new CriKeychain({ ttlMs: 60_000 })
  const chain = new ChainedCredentials([kc, new StaticCredentials({ 'r.example': { username: 'docker', password: 'cfg' } })])
  t.same(await chain.get('r.example'), { username: 'docker', password: 'cfg' })
  kc.remember('r.example/app:1', { username: 'kube', password: 'secret' })
  t.same(await chain.get('r.example'), { username: 'kube', password: 'secret' })
  t.equal(await chain.get('other.example'), undefined)
})
