/**
 * The streaming index build at N entries without a blob or a mount (issue #12's 1M tier):
 * `node --expose-gc --import tsx bench/metadata-1m.ts [--entries 1000000]`. TOC JSON is generated
 * piece by piece (N small files in N/100 directories, as bench/metadata.ts's layer) and fed to
 * the same chain the mount path runs (scanner → validator → columns → CompactIndex), so the
 * figures are the build's own: time, index bytes per entry, peak RSS (VmHWM) over the process
 * before the build, and RSS after it and a GC.
 */
import { readFileSync } from 'node:fs'
import { TocValidator } from '../src/estargz/toc-validate.js'
import { TocColumns } from '../src/index/toc-columns.js'
import { TocEntryScanner } from '../src/index/toc-stream.js'
import { CompactIndex } from '../src/index/compact-index.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK } from '../src/estargz/types.js'

const i = process.argv.indexOf('--entries')
const N = i > 0 ? Number(process.argv[i + 1]) : 1_000_000
const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined)

function* pieces(): Generator<Buffer> {
  const dirs = Math.max(1, Math.round(N / 100))
  yield Buffer.from('{\n\t"version": 1,\n\t"entries": [\n')
  let parts: string[] = []
  let off = 0
  for (let k = 0; k < N; k++) {
    const sep = k === 0 ? '' : ',\n'
    if (k < dirs) parts.push(`${sep}\t\t{\n\t\t\t"name": "d${k}",\n\t\t\t"type": "dir",\n\t\t\t"modtime": "2024-01-02T03:04:05Z",\n\t\t\t"mode": 493\n\t\t}`)
    else parts.push(`${sep}\t\t{\n\t\t\t"name": "d${k % dirs}/f${k}",\n\t\t\t"type": "reg",\n\t\t\t"size": 45,\n\t\t\t"modtime": "2024-01-02T03:04:05Z",\n\t\t\t"mode": 420,\n\t\t\t"offset": ${(off += 120)},\n\t\t\t"digest": "sha256:${k.toString(16).padStart(64, '0')}",\n\t\t\t"chunkDigest": "sha256:${k.toString(16).padStart(64, '0')}"\n\t\t}`)
    if (parts.length === 1000) { yield Buffer.from(parts.join('')); parts = [] }
  }
  yield Buffer.from(parts.join('') + '\n\t]\n}')
}

gc()
const base = kb('VmRSS')
const t0 = performance.now()
let bytes = 0
// In a function, so the columns are garbage once the index exists (as on the mount path).
function build(): CompactIndex {
  const v = new TocValidator({ tocOffset: 2 ** 50, footerKind: 'estargz' })
  const cols = new TocColumns({ prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK }, 'gzip')
  const scanner = new TocEntryScanner((e) => cols.add(v.add(e)), 1 << 20, false)
  for (const p of pieces()) { bytes += p.length; scanner.write(p) }
  scanner.end(); v.finish(); cols.finish(2 ** 50)
  return CompactIndex.build(cols)
}
const index = build()
const ms = performance.now() - t0
const peak = kb('VmHWM') - base
gc()
const after = kb('VmRSS') - base
console.error('heapUsed MB', (process.memoryUsage().heapUsed / 1e6).toFixed(1), 'arrayBuffers MB', (process.memoryUsage().arrayBuffers / 1e6).toFixed(1), 'index MB', (index.byteLength() / 1e6).toFixed(1))
console.log('| entries | TOC JSON MB | build s | index B/entry | peak RSS over base B/entry | RSS after build + GC B/entry |')
console.log('|---|---|---|---|---|---|')
console.log(`| ${N} | ${(bytes / 1e6).toFixed(0)} | ${(ms / 1000).toFixed(1)} | ${(index.byteLength() / N).toFixed(0)} | ${(peak / N).toFixed(0)} | ${(after / N).toFixed(0)} |`)
