import t from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BlobReader } from '../../src/reader/blob-reader.js'
import { FileRangeSource } from '../../src/estargz/file-source.js'
import { runStargz } from '../../harness/cli.js'

// Blobs converted by the reference converter (ctr-remote 0.12) and a legacy CRFS blob; see
// test/fixtures/ctr-remote/README.md for how scripts/fixtures/ctr-remote-fixtures.sh made them.
const FIX = fileURLToPath(new URL('../fixtures/ctr-remote/', import.meta.url))

interface Sidecar { name: string; blob: string; digest: string; tocDigest: string; sourceListing?: string; footer: { kind: string } }
interface ListingEntry { name: string; type: string; mode: number; uid: number; gid: number; size?: number; sha256?: string; linkName?: string; devMajor?: number; devMinor?: number }

const sidecars = readdirSync(FIX)
  .filter((f) => f.endsWith('.json') && !/\.(toc|input|expected)\.json$/.test(f))
  .map((f) => JSON.parse(readFileSync(join(FIX, f), 'utf8')) as Sidecar)
  .filter((s) => typeof s.blob === 'string')

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const clean = (n: string): string => n.split('/').filter((p) => p !== '' && p !== '.').join('/')

function expectedEntries(s: Sidecar): Map<string, ListingEntry> {
  const out = new Map<string, ListingEntry>()
  if (s.sourceListing) {
    const l = JSON.parse(readFileSync(join(FIX, s.sourceListing), 'utf8')) as { entries: ListingEntry[] }
    for (const e of l.entries) out.set(clean(e.name), e)
  } else {
    const l = JSON.parse(readFileSync(join(FIX, `${s.name}.expected.json`), 'utf8')) as Record<string, Omit<ListingEntry, 'name'>>
    for (const [name, e] of Object.entries(l)) out.set(clean(name), { name, ...e })
  }
  return out
}

t.ok(sidecars.length >= 4, 'reference fixtures present')

for (const s of sidecars) {
  t.test(`${s.name}: read byte-exact what the reference wrote`, async (t) => {
    const src = await FileRangeSource.open(join(FIX, s.blob))
    t.teardown(() => src.close())
    const r = await BlobReader.open(src, { tocDigest: s.tocDigest })
    t.equal(r.footer.kind, s.footer.kind)
    const want = expectedEntries(s)
    let files = 0
    for (const [name, e] of want) {
      if (name === '') continue
      const got = r.lookup(name)
      t.ok(got, `${name} is in the TOC`)
      if (!got) continue
      t.equal(got.type, e.type, `${name} type`)
      t.equal(got.mode ?? 0, e.mode, `${name} mode`)
      t.equal(got.uid ?? 0, e.uid, `${name} uid`)
      if (e.linkName !== undefined) t.equal(clean(got.linkName ?? ''), e.type === 'hardlink' ? clean(e.linkName) : clean(e.linkName) , `${name} link`)
      if (e.devMajor !== undefined) t.same([got.devMajor ?? 0, got.devMinor ?? 0], [e.devMajor, e.devMinor ?? 0], `${name} device`)
      if (e.type === 'reg' && e.sha256) {
        const data = await r.readFile(name)
        t.equal(data.length, e.size, `${name} size`)
        t.equal(sha(data), e.sha256, `${name} bytes`)
        files++
      }
    }
    t.ok(files > 0, 'compared file contents')
    const v = await r.verifyAll()
    t.equal(v.unverified, 0, 'every chunk verified')
  })
}

t.test('CLI verify/cat on a reference blob, and a wrong --toc-digest', async (t) => {
  const s = sidecars.find((x) => x.name === 'tree-chunked') ?? sidecars[0]!
  const blob = join(FIX, s.blob)
  const v = await runStargz(['verify', blob, '--toc-digest', s.tocDigest])
  t.equal(v.code, 0, v.stderr)
  const bad = await runStargz(['verify', blob, '--toc-digest', s.digest])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /TOC digest mismatch/)
})
