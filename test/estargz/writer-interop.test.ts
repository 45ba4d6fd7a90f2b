/**
 * Interop with the reference converter: for each ctr-remote fixture whose input tar we can get,
 * convert the same input with the same options and compare the TOCs entry by entry. Offsets differ
 * (Go's deflate is not zlib's), so `offset` is left out; everything else must match.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import type { Toc, TocEntry } from '../../src/estargz/types.js'
import { convertBuffer } from '../../harness/memtar.js'
import { tocOf } from '../../harness/convert.js'
import { sh } from '../../harness/tree.js'

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'ctr-remote')
const ROOT = join(import.meta.dirname, '..', '..')

interface Sidecar { name: string; command: string; source: string | null; sourceTarDigest: string; toc: string; digest: string }

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

async function inputTar(s: Sidecar): Promise<Buffer | string> {
  if (s.source) {
    const p = join(FIXTURES, s.source)
    if (!existsSync(p)) return `input ${s.source} is missing`
    return gunzipSync(await readFile(p))
  }
  if (s.name.startsWith('busybox')) {
    const script = join(ROOT, 'scripts', 'fixtures', 'busybox-rootfs.sh')
    if (!existsSync(script) || !existsSync('/bin/busybox')) return 'busybox-rootfs.sh or /bin/busybox missing'
    const { stdout } = await sh('bash', [script])
    const tar = await readFile(stdout.trim())
    return tar
  }
  return 'no input tar recorded'
}

function optionsFrom(s: Sidecar): { chunkSize?: number; prioritizedFiles?: string[] } | string {
  const opts: { chunkSize?: number; prioritizedFiles?: string[] } = {}
  const chunk = /--estargz-chunk-size (\d+)/.exec(s.command)
  if (chunk) opts.chunkSize = Number(chunk[1])
  if (/--estargz-record-in/.test(s.command)) {
    const rec = join(FIXTURES, `${s.name}.record.jsonl`)
    if (!existsSync(rec)) return `record file ${s.name}.record.jsonl missing`
    opts.prioritizedFiles = []
  }
  if (/\boptimize\b/.test(s.command) && !/--no-optimize/.test(s.command)) return 'optimize runs the workload; not reproducible here'
  return opts
}

function skip(tt: { pass(msg: string, extra: { skip: string }): void }, reason: string): void {
  tt.pass(reason, { skip: reason })
}

const withoutOffsets = (e: TocEntry): TocEntry => {
  const { offset: _o, ...rest } = e
  return rest
}

const sidecars = existsSync(FIXTURES)
  ? (await import('node:fs')).readdirSync(FIXTURES).filter((f) => f.endsWith('.json') && !f.endsWith('.toc.json') && !f.endsWith('.input.json') && !f.endsWith('.expected.json'))
  : []

if (sidecars.length === 0) {
  t.pass('skipped: no ctr-remote fixtures under test/fixtures/ctr-remote', { skip: 'no ctr-remote fixtures under test/fixtures/ctr-remote (scripts/fixtures/ctr-remote-fixtures.sh makes them)' })
}

for (const file of sidecars.sort()) {
  const s = JSON.parse(await readFile(join(FIXTURES, file), 'utf8')) as Sidecar & { sameBlobAs?: string; blob?: string }
  t.test(`TOC matches the reference for ${s.name}`, async (tt) => {
    if (!s.toc || !existsSync(join(FIXTURES, s.toc)) || !s.command?.startsWith('ctr-remote')) {
      skip(tt, `${s.name}: not a ctr-remote eStargz fixture with a TOC`)
      return
    }
    const opts = optionsFrom(s)
    if (typeof opts === 'string') { skip(tt, `${s.name}: ${opts}`); return }
    if (opts.prioritizedFiles) {
      const lines = (await readFile(join(FIXTURES, `${s.name}.record.jsonl`), 'utf8')).split('\n').filter(Boolean)
      opts.prioritizedFiles = lines.map((l) => (JSON.parse(l) as { path: string }).path)
    }
    const input = await inputTar(s)
    if (typeof input === 'string') { skip(tt, `${s.name}: ${input}`); return }
    if (sha(input) !== s.sourceTarDigest) {
      skip(tt, `${s.name}: the input tar we can build (${sha(input)}) is not the one the fixture was made from (${s.sourceTarDigest})`)
      return
    }
    const refJson = await readFile(join(FIXTURES, s.toc))
    const ref = JSON.parse(refJson.toString('utf8')) as Toc
    const { blob, result } = await convertBuffer(input, opts)
    const ours = tocOf(blob).toc
    tt.same(ours.entries.map((e) => `${e.type}:${e.name}`), ref.entries.map((e) => `${e.type}:${e.name}`), 'same entries in the same order')
    tt.same(ours.entries.map(withoutOffsets), ref.entries.map(withoutOffsets), 'same fields (offsets aside)')
    tt.same(Object.keys(ours.entries.find((e) => e.type === 'reg' && (e.size ?? 0) > 0) ?? {}), Object.keys(ref.entries.find((e) => e.type === 'reg' && (e.size ?? 0) > 0) ?? {}), 'same field order')
    // Same JSON layout: with our offsets replaced by the reference's, the bytes are identical.
    const patched = Buffer.from(tocOf(blob).json.toString('utf8').replace(/"offset": \d+/g, () => 'OFFSET'))
    const refPatched = Buffer.from(refJson.toString('utf8').replace(/"offset": \d+/g, () => 'OFFSET'))
    tt.ok(patched.equals(refPatched), 'TOC JSON bytes identical apart from offset values')
    tt.equal(result.missingPrioritizedFiles.length, opts.prioritizedFiles ? 1 : 0, 'missing prioritized files reported')
  })
}
