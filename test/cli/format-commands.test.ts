import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { buildMiniEstargz } from '../../harness/mini-estargz.js'
import { runStargz } from '../../harness/cli.js'

const dir = mkdtempSync(join(tmpdir(), 'stargz-cli-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const big = randomBytes(200_000)
const m = buildMiniEstargz([
  { name: 'etc', type: 'dir' },
  { name: 'etc/os-release', data: Buffer.from('NAME=test\n') },
  { name: 'big', data: big, chunkSize: 65536 },
])
const blob = join(dir, 'layer.estargz')
writeFileSync(blob, m.blob)

t.test('toc prints the TOC and checks --toc-digest', async (t) => {
  const r = await runStargz(['toc', blob, '--toc-digest', m.tocDigest])
  t.equal(r.code, 0, r.stderr)
  const toc = JSON.parse(r.stdout.toString()) as { version: number; entries: Array<{ name: string }> }
  t.equal(toc.version, 1)
  t.same(toc.entries.map((e) => e.name).filter((n, i, a) => a.indexOf(n) === i), ['etc', 'etc/os-release', 'big'])
  const bad = await runStargz(['toc', blob, '--toc-digest', 'sha256:' + 'f'.repeat(64)])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /TOC digest mismatch/)
  t.equal(bad.stderr.trim().split('\n').length, 1, 'one error line')
})

t.test('cat writes exact bytes', async (t) => {
  const r = await runStargz(['cat', blob, 'big'])
  t.equal(r.code, 0, r.stderr)
  t.ok(r.stdout.equals(big))
  const small = await runStargz(['cat', blob, '/etc/os-release'])
  t.equal(small.stdout.toString(), 'NAME=test\n')
  const missing = await runStargz(['cat', blob, 'nope'])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /no file "nope"/)
})

t.test('verify passes on a good blob and fails on a tampered one', async (t) => {
  const ok = await runStargz(['verify', blob])
  t.equal(ok.code, 0, ok.stderr)
  t.match(JSON.parse(ok.stdout.toString()), { chunks: 5, files: 2, unverifiedChunks: 0 })
  const tampered = Buffer.from(m.blob)
  const e = m.toc.entries.find((x) => x.name === 'big' && x.chunkOffset === 65536) as { offset: number }
  tampered[e.offset + 20] = (tampered[e.offset + 20] ?? 0) ^ 0x55
  const bad = join(dir, 'tampered.estargz')
  writeFileSync(bad, tampered)
  const r = await runStargz(['verify', bad])
  t.not(r.code, 0)
  t.match(r.stderr, /stargz: ERR_/)
})

t.test('bad input gives one clear line', async (t) => {
  const notBlob = join(dir, 'plain.txt')
  writeFileSync(notBlob, 'just text, definitely not a stargz blob, long enough to hold a footer...')
  const r = await runStargz(['verify', notBlob])
  t.equal(r.code, 1)
  t.match(r.stderr, /not an eStargz blob/)
  const nofile = await runStargz(['toc', join(dir, 'missing')])
  t.equal(nofile.code, 1)
  t.match(nofile.stderr, /neither an existing file nor an image reference/)
  const flag = await runStargz(['toc', blob, '--bogus'])
  t.equal(flag.code, 2, 'a usage error exits 2')
  t.match(flag.stderr, /unknown flag --bogus/)
})
