import t from 'tap'
import fc from 'fast-check'
import { formatReference, parseReference } from '../../src/registry/reference.js'
import { InvalidArgumentError } from '../../src/errors.js'

const D = 'sha256:' + 'a'.repeat(64)

t.test('valid references normalise as Docker does', async (t) => {
  const table: Array<[string, string, string, string | undefined, string | undefined]> = [
    // input, registry, repository, tag, digest
    ['busybox', 'docker.io', 'library/busybox', 'latest', undefined],
    ['busybox:1.36', 'docker.io', 'library/busybox', '1.36', undefined],
    ['library/busybox', 'docker.io', 'library/busybox', 'latest', undefined],
    ['docker.io/busybox', 'docker.io', 'library/busybox', 'latest', undefined],
    ['index.docker.io/user/app:v1', 'docker.io', 'user/app', 'v1', undefined],
    ['user/app', 'docker.io', 'user/app', 'latest', undefined],
    ['localhost/app', 'localhost', 'app', 'latest', undefined],
    ['localhost:5000/a/b/c:tag_1.2-x', 'localhost:5000', 'a/b/c', 'tag_1.2-x', undefined],
    ['127.0.0.1:5000/repo@' + D, '127.0.0.1:5000', 'repo', undefined, D],
    ['ghcr.io/org/img:t@' + D, 'ghcr.io', 'org/img', 't', D],
    ['[::1]:5000/repo', '[::1]:5000', 'repo', 'latest', undefined],
    ['reg.example.com/a__b/c-d--e/f.g', 'reg.example.com', 'a__b/c-d--e/f.g', 'latest', undefined],
  ]
  for (const [input, registry, repository, tag, digest] of table) {
    const r = parseReference(input)
    t.same({ registry: r.registry, repository: r.repository, tag: r.tag, digest: r.digest }, { registry, repository, tag, digest }, input)
  }
})

t.test('invalid references fail with InvalidArgumentError naming the problem', async (t) => {
  const table: Array<[string, RegExp]> = [
    ['', /empty/],
    ['UPPER/case', /lower case/],
    ['repo:', /tag/],
    ['repo:-bad', /tag/],
    ['repo@sha256:abc', /64 hex/],
    ['repo@md5:' + 'a'.repeat(32), /unsupported algorithm/],
    ['reg.io/', /no repository/],
    ['reg.io:99999/x', /registry host/],
    ['a//b', /path component/],
    ['a/-b', /path component/],
    ['has space', /whitespace/],
    ['x/' + 'a'.repeat(300), /longer than 255/],
    ['repo:' + 't'.repeat(129), /tag/],
  ]
  for (const [input, re] of table) {
    let err: unknown
    try { parseReference(input) } catch (e) { err = e }
    t.ok(err instanceof InvalidArgumentError, `${JSON.stringify(input)} throws InvalidArgumentError`)
    t.match((err as Error | undefined)?.message ?? '', re, `${JSON.stringify(input)} message says why`)
    t.ok(((err as Error | undefined)?.message ?? '').includes(JSON.stringify(input)), `${JSON.stringify(input)} message names the input`)
  }
})

t.test('formatReference round-trips through parseReference', async (t) => {
  const comp = fc.stringMatching(/^[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8})?$/)
  fc.assert(fc.property(
    fc.option(fc.constantFrom('reg.io', 'localhost:5000', '127.0.0.1:1234'), { nil: undefined }),
    fc.array(comp, { minLength: 1, maxLength: 3 }),
    fc.option(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/), { nil: undefined }),
    (host, path, tag) => {
      const s = `${host ? host + '/' : ''}${path.join('/')}${tag ? ':' + tag : ''}`
      const r = parseReference(s)
      const again = parseReference(formatReference(r))
      return JSON.stringify(again) === JSON.stringify(r)
    },
  ))
  t.pass('property held')
})
