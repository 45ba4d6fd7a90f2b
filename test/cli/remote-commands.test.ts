import t from 'tap'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, gzipLayer } from '../../harness/image.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'
import { runStargz } from '../../harness/cli.js'

// toc / cat / verify on REF --layer N against the real docker-registry, reading with ranges.
const FIX = fileURLToPath(new URL('../fixtures/ctr-remote/', import.meta.url))
const side = JSON.parse(readFileSync(join(FIX, 'tree-chunked.json'), 'utf8')) as { blob: string; diffID: string; tocDigest: string; size: number }
const listing = JSON.parse(readFileSync(join(FIX, 'tree.input.json'), 'utf8')) as { entries: Array<{ name: string; type: string; sha256?: string; size?: number }> }

const reg = await startRegistry()
t.teardown(() => reg.close())
const work = mkdtempSync(join(tmpdir(), 'stargz-remote-cli-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

const plain = gzipLayer([{ name: 'hello.txt', data: Buffer.from('hi\n') }])
const img = buildImage({
  layers: [
    plain,
    { data: readFileSync(join(FIX, side.blob)), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: side.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: side.tocDigest } },
  ],
})
const client = new RegistryClient({ plainHttp: true, hostsDir: join(work, 'certs.d'), credentials: new StaticCredentials({}) })
t.teardown(() => client.close())
const ref = `${reg.host}/cli/tree:esgz`
await client.pushImage(ref, img.config, img.layers)
const common = ['--plain-http', '--hosts-dir', join(work, 'certs.d')]

t.test('cat REF --layer 1 reads a chunked file by ranges, verified by the annotation', async (t) => {
  const big = listing.entries.find((e) => e.type === 'reg' && (e.size ?? 0) > 2_000_000)!
  const r = await runStargz(['cat', ref, big.name, '--layer', '1', '--stats', ...common])
  t.equal(r.code, 0, r.stderr)
  t.equal(createHash('sha256').update(r.stdout).digest('hex'), big.sha256)
  t.match(r.stderr, /fetched \d+ of \d+ bytes in \d+ requests/)
})

t.test('verify and toc on REF', async (t) => {
  const v = await runStargz(['verify', ref, '--layer', '1', ...common])
  t.equal(v.code, 0, v.stderr)
  t.match(JSON.parse(v.stdout.toString()), { tocDigest: side.tocDigest, tocDigestVerified: true, unverifiedChunks: 0 })
  const toc = await runStargz(['toc', ref, '--layer', '1', ...common])
  t.equal(toc.code, 0, toc.stderr)
  t.ok((JSON.parse(toc.stdout.toString()) as { entries: unknown[] }).entries.length > 10)
})

t.test('clear errors: several layers without --layer, a plain gzip layer, a missing tag', async (t) => {
  const many = await runStargz(['toc', ref, ...common])
  t.equal(many.code, 1)
  t.match(many.stderr, /has 2 layers; choose one with --layer/)
  const gz = await runStargz(['toc', ref, '--layer', '0', ...common])
  t.equal(gz.code, 1)
  t.match(gz.stderr, /not an eStargz blob/)
  const missing = await runStargz(['toc', `${reg.host}/cli/tree:nope`, ...common])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /nope/)
})
