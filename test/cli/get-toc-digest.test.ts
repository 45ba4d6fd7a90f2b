/**
 * `stargz get-toc-digest` prints the digest ctr-remote recorded for blobs it wrote itself
 * (test/fixtures/ctr-remote: eStargz and legacy stargz layers made by ctr-remote convert).
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { REPO, runStargz } from '../../harness/cli.js'

const dir = join(REPO, 'test/fixtures/ctr-remote')

for (const name of ['busybox', 'tree', 'tree-chunked', 'tree-prioritized']) {
  t.test(`${name}: the TOC digest ctr-remote recorded`, async (t) => {
    const meta = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) as { blob: string; tocDigest: string }
    const r = await runStargz(['get-toc-digest', join(dir, meta.blob)])
    t.equal(r.code, 0, r.stderr)
    t.equal(r.stdout.toString(), `${meta.tocDigest}\n`)
  })
}

t.test('a TOC digest given that does not match is refused', async (t) => {
  const meta = JSON.parse(readFileSync(join(dir, 'busybox.json'), 'utf8')) as { blob: string; digest: string }
  const r = await runStargz(['get-toc-digest', join(dir, meta.blob), '--toc-digest', meta.digest])
  t.equal(r.code, 1)
  t.match(r.stderr, /^stargz: ERR_TOC_DIGEST_MISMATCH/)
  const usage = await runStargz(['get-toc-digest'])
  t.equal(usage.code, 2, 'no blob: usage error')
})
