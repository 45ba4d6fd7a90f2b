/**
 * Cheap consistency checks of the committed interop fixtures (test/fixtures/ctr-remote/): each
 * sidecar's digest and size match its blob, the footer sits where the sidecar says and names the
 * TOC member, and the TOC digest is the sha256 of the TOC bytes kept beside the blob. The reader
 * tests rely on these files being what their sidecars claim; this catches a botched regeneration.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'

const dir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'ctr-remote')

interface Sidecar {
  name: string
  blob: string
  digest: string
  size: number
  diffID: string
  tocDigest: string
  footer: { kind: 'estargz' | 'legacy'; size: number; tocOffset: number }
  toc?: string
  tocEntries: number
  source: string | null
  sourceListing?: string
  sourceTarDigest: string
  sourceTarSize: number
  layerAnnotations?: Record<string, string>
  uncompressedSize?: number | null
}

const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

function isSidecar(v: unknown): v is Sidecar {
  if (typeof v !== 'object' || v === null) return false
  const o = v as Record<string, unknown>
  return typeof o.blob === 'string' && typeof o.digest === 'string' && typeof o.size === 'number' && typeof o.footer === 'object'
}

/** The TOC JSON bytes inside the TOC member: one tar header (512 bytes), then size bytes. */
function tocFromMember(member: Buffer): { name: string; json: Buffer } {
  const tar = gunzipSync(member)
  const name = tar.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '')
  const size = parseInt(tar.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim(), 8)
  return { name, json: tar.subarray(512, 512 + size) }
}

const sidecars = readdirSync(dir)
  .filter((f) => f.endsWith('.json') && !/\.(toc|input|expected)\.json$/.test(f))
  .sort()

t.ok(sidecars.length >= 5, `found ${sidecars.length} sidecars in ${dir}`)

for (const file of sidecars) {
  t.test(file, async (t) => {
    const side: unknown = JSON.parse(readFileSync(join(dir, file), 'utf8'))
    if (!isSidecar(side)) {
      t.fail(`${file} is not a fixture sidecar`)
      return
    }
    const blob = readFileSync(join(dir, side.blob))
    t.equal(blob.length, side.size, 'size matches the blob')
    t.equal(sha256(blob), side.digest, 'sha256 of the blob is the digest')

    const { kind, size: footerSize, tocOffset } = side.footer
    t.equal(footerSize, kind === 'legacy' ? 47 : 51, 'footer size fits its kind')
    const footer = blob.subarray(blob.length - footerSize)
    t.same([...footer.subarray(0, 4)], [0x1f, 0x8b, 0x08, 0x04], 'footer is a gzip header with FEXTRA')
    t.equal(footer.readUInt16LE(10), kind === 'legacy' ? 22 : 26, 'XLEN')
    const hexAt = kind === 'legacy' ? 12 : 16
    if (kind === 'estargz') t.equal(footer.subarray(12, 14).toString('latin1'), 'SG', 'subfield id "SG"')
    t.equal(footer.subarray(hexAt + 16, hexAt + 22).toString('latin1'), 'STARGZ', '"STARGZ" right after the offset')
    t.equal(parseInt(footer.subarray(hexAt, hexAt + 16).toString('latin1'), 16), tocOffset, 'footer offset is the sidecar tocOffset')
    t.same([...footer.subarray(footerSize - 13)], [1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0], 'empty stored block, CRC 0, ISIZE 0')

    const toc = tocFromMember(blob.subarray(tocOffset, blob.length - footerSize))
    t.equal(toc.name, 'stargz.index.json', 'the TOC member holds stargz.index.json')
    t.equal(sha256(toc.json), side.tocDigest, 'tocDigest is the sha256 of the TOC bytes')
    const parsed = JSON.parse(toc.json.toString('utf8')) as { version: number; entries: unknown[] }
    t.equal(parsed.version, 1, 'TOC version 1')
    t.equal(parsed.entries.length, side.tocEntries, 'entry count')
    if (side.toc) t.ok(readFileSync(join(dir, side.toc)).equals(toc.json), `${side.toc} is the TOC as stored`)
    if (side.layerAnnotations) {
      t.equal(side.layerAnnotations['containerd.io/snapshot/stargz/toc.digest'], side.tocDigest, 'TOC digest annotation')
    }

    // The whole blob is one valid tar.gz whose uncompressed bytes hash to the diffID.
    const whole = gunzipSync(blob)
    t.equal(sha256(whole), side.diffID, 'sha256 of the uncompressed blob is the diffID')
    if (typeof side.uncompressedSize === 'number') t.equal(whole.length, side.uncompressedSize, 'uncompressed size annotation')

    if (side.source) {
      const src = join(dir, side.source)
      t.ok(existsSync(src), `${side.source} exists`)
      const tar = gunzipSync(readFileSync(src))
      t.equal(tar.length, side.sourceTarSize, 'source tar size')
      t.equal(sha256(tar), side.sourceTarDigest, 'source tar digest')
    }
    if (side.sourceListing) {
      const listing = JSON.parse(readFileSync(join(dir, side.sourceListing), 'utf8')) as { tarDigest: string }
      t.equal(listing.tarDigest, side.sourceTarDigest, 'listing describes the same source tar')
    }
  })
}
