/**
 * Streaming TOC parse vs JSON.parse (issue #12): node --import tsx bench/toc-stream.ts [--entries N]
 *
 * One child process per parser (so VmHWM is its own): the TOC JSON of N entries (as our writer
 * lays entries out) is fed in 64 KiB chunks, as the inflate stream would deliver it; entries are
 * counted and dropped (the index keeps what it needs). `whole` joins the chunks into one string
 * and JSON.parses it, which is what the reader does today. Prints ms and peak RSS over the base.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { TocEntryScanner, TocTokenizer } from '../src/index/toc-stream.js'

const argv = process.argv
const opt = (k: string): string | undefined => { const i = argv.indexOf(`--${k}`); return i > 0 ? argv[i + 1] : undefined }
const N = Number(opt('entries') ?? 100_000)
const hwm = (): number => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024

function tocJson(n: number): Buffer {
  const entries = []
  for (let i = 0; i < n; i++) {
    entries.push({ name: `d${i % 1000}/f${i}`, type: 'reg', size: 50, modtime: '2024-01-02T03:04:05Z', mode: 420, uid: 0, gid: 0,
      userName: 'root', groupName: 'root', offset: i * 120, digest: `sha256:${i.toString(16).padStart(64, '0')}`, chunkDigest: `sha256:${(i + 1).toString(16).padStart(64, '0')}` })
  }
  return Buffer.from(JSON.stringify({ version: 1, entries }))
}

const mode = opt('mode')
if (mode !== undefined) {
  const buf = tocJson(N)
  const chunks: Buffer[] = []
  for (let o = 0; o < buf.length; o += 65536) chunks.push(Buffer.from(buf.subarray(o, o + 65536)))
  const base = hwm()
  const t0 = performance.now()
  let count = 0
  if (mode === 'whole') {
    const s = Buffer.concat(chunks).toString('utf8')
    count = (JSON.parse(s) as { entries: unknown[] }).entries.length
  } else {
    const p = mode === 'scanner' ? new TocEntryScanner(() => { count++ }) : new TocTokenizer(() => { count++ })
    for (const c of chunks) p.write(c)
    p.end()
  }
  const ms = performance.now() - t0
  process.stdout.write(JSON.stringify({ mode, ms, count, peakOverBase: hwm() - base, bytes: buf.length }))
} else {
  console.log(`| parser (${N} entries) | ms | MB/s | peak RSS over base MiB | entries |`)
  console.log('|---|---|---|---|---|')
  for (const m of ['whole', 'scanner', 'tokenizer']) {
    const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--mode', m, '--entries', String(N)], { encoding: 'utf8' })
    const r = JSON.parse(out) as { ms: number; count: number; peakOverBase: number; bytes: number }
    console.log(`| ${m} | ${r.ms.toFixed(0)} | ${(r.bytes / 2 ** 20 / (r.ms / 1000)).toFixed(0)} | ${(r.peakOverBase / 2 ** 20).toFixed(1)} | ${r.count} |`)
  }
}
