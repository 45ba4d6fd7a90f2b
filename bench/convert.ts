/**
 * Convert throughput: our eStargz writer vs `gzip -6` and `pigz -6` on the same tar, N runs each
 * in the same process run, medians; then the cost of `cat`-ing one small file from the converted
 * blob by reading only its chunk vs gunzipping the whole blob. Prints Markdown to stdout.
 *
 *   node --import tsx bench/convert.ts [--input FILE.tar] [--runs 3] [--chunk-size N]
 *
 * Without --input, uses the tar printed by scripts/fixtures/rootfs.sh (a cached >= 500 MB rootfs).
 */
import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream, existsSync } from 'node:fs'
import { mkdtemp, open, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { promisify } from 'node:util'
import { createGunzip, gunzipSync } from 'node:zlib'
import { parseArgs, flagInt, flagString } from '../src/cli/args.js'
import { convertLayer } from '../src/estargz/writer.js'
import type { RangeSource, Toc, TocEntry } from '../src/estargz/types.js'

const execFileP = promisify(execFile)
const ROOT = join(import.meta.dirname, '..')

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

async function timeIt(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - t0) / 1e9
}

/** Runs `cmd args < inFile > outFile`; resolves with its user+sys CPU seconds (bash `time`). */
function runTo(cmd: string, args: string[], inFile: string, outFile: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const quoted = [cmd, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
    const p = spawn('bash', ['-c', `TIMEFORMAT='%U %S'; time ${quoted}`], { stdio: ['pipe', 'pipe', 'pipe'] })
    let err = ''
    p.stderr.on('data', (c: Buffer) => { err += c.toString() })
    const done = Promise.all([
      pipeline(createReadStream(inFile, { highWaterMark: 1 << 20 }), p.stdin),
      pipeline(p.stdout, createWriteStream(outFile)),
    ])
    p.on('error', reject)
    p.on('close', (code) => {
      const cpu = (err.trim().split('\n').at(-1) ?? '').split(' ').map(Number)
      done.then(() => (code === 0 ? resolve((cpu[0] ?? NaN) + (cpu[1] ?? NaN)) : reject(new Error(`${cmd} exited ${code}: ${err}`))), reject)
    })
  })
}

async function resolveInput(flag: string | undefined): Promise<string> {
  if (flag) return flag
  const script = join(ROOT, 'scripts', 'fixtures', 'rootfs.sh')
  if (!existsSync(script)) throw new Error('no --input given and scripts/fixtures/rootfs.sh does not exist')
  const { stdout } = await execFileP('bash', [script], { maxBuffer: 1 << 20 })
  const last = stdout.trim().split('\n').at(-1)
  if (!last) throw new Error('rootfs.sh printed nothing')
  return last
}

/** A file RangeSource that counts what is read. */
async function countingSource(path: string): Promise<RangeSource & { bytesRead: number; reads: number; close(): Promise<void> }> {
  const fh = await open(path, 'r')
  const { size } = await fh.stat()
  const src = {
    size,
    bytesRead: 0,
    reads: 0,
    async read(offset: number, length: number): Promise<Buffer> {
      const buf = Buffer.allocUnsafe(length)
      let done = 0
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done)
        if (bytesRead === 0) throw new Error(`short read at ${offset + done}`)
        done += bytesRead
      }
      src.bytesRead += length
      src.reads++
      return buf
    },
    async close(): Promise<void> { await fh.close() },
  }
  return src
}

/** Reads the TOC through the footer (51 bytes, eStargz). */
async function readToc(blob: string): Promise<{ toc: Toc; tocOffset: number; size: number }> {
  const src = await countingSource(blob)
  try {
    const footer = await src.read(src.size - 51, 51)
    const tocOffset = parseInt(footer.toString('latin1', 16, 32), 16)
    const tar = gunzipSync(await src.read(tocOffset, src.size - 51 - tocOffset))
    const size = parseInt(tar.toString('latin1', 124, 136).replace(/\0.*$/, ''), 8)
    return { toc: JSON.parse(tar.toString('utf8', 512, 512 + size)) as Toc, tocOffset, size: src.size }
  } finally {
    await src.close()
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), { values: ['input', 'runs', 'chunk-size'] })
  const runs = flagInt(args, 'runs') ?? 3
  const chunkSize = flagInt(args, 'chunk-size')
  const input = await resolveInput(flagString(args, 'input'))
  const inSize = (await stat(input)).size
  const dir = await mkdtemp(join(tmpdir(), 'stargz-bench-'))
  try {
    const times: Record<string, number[]> = { stargzd: [], 'gzip -6': [], 'pigz -6': [] }
    const sizes: Record<string, number> = {}
    const cpu: Record<string, number[]> = { stargzd: [], 'gzip -6': [], 'pigz -6': [] }
    const blob = join(dir, 'out.esgz')
    for (let i = 0; i < runs; i++) {
      // process.cpuUsage() covers every thread of this process, the gzip workers included.
      const c0 = process.cpuUsage()
      times.stargzd!.push(await timeIt(async () => {
        const r = await convertLayer(createReadStream(input, { highWaterMark: 1 << 20 }), createWriteStream(blob), chunkSize ? { chunkSize } : {})
        sizes.stargzd = r.size
      }))
      const c1 = process.cpuUsage(c0)
      cpu.stargzd!.push((c1.user + c1.system) / 1e6)
      times['gzip -6']!.push(await timeIt(async () => { cpu['gzip -6']!.push(await runTo('gzip', ['-6', '-n', '-c'], input, join(dir, 'out.gz'))) }))
      sizes['gzip -6'] = (await stat(join(dir, 'out.gz'))).size
      times['pigz -6']!.push(await timeIt(async () => { cpu['pigz -6']!.push(await runTo('pigz', ['-6', '-n', '-c'], input, join(dir, 'out.pigz'))) }))
      sizes['pigz -6'] = (await stat(join(dir, 'out.pigz'))).size
    }
    const mb = inSize / 1e6
    const ours = median(times.stargzd!)
    const out: string[] = []
    out.push(`## Convert throughput (${input}, ${mb.toFixed(1)} MB uncompressed, ${runs} runs, medians)`, '')
    out.push(`load average at start: ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')} (wall times are only comparable on an idle machine; CPU seconds are less sensitive)`, '')
    out.push('| tool | median s | MB/s (input) | CPU s (user+sys) | output MB | ratio | stargzd speed vs this |', '|---|---:|---:|---:|---:|---:|---:|')
    for (const [name, ts] of Object.entries(times)) {
      const m = median(ts)
      out.push(`| ${name} | ${m.toFixed(2)} | ${(mb / m).toFixed(1)} | ${median(cpu[name] ?? []).toFixed(1)} | ${((sizes[name] ?? 0) / 1e6).toFixed(1)} | ${((sizes[name] ?? 0) / inSize).toFixed(3)} | ${(m / ours).toFixed(2)}× |`)
    }
    out.push('', `runs (s): ${Object.entries(times).map(([k, v]) => `${k}: ${v.map((x) => x.toFixed(2)).join(', ')}`).join('; ')}`, '')

    // cat one small file: only its chunk vs the whole blob.
    const { toc, tocOffset, size } = await readToc(blob)
    const regs = toc.entries.filter((e) => e.type === 'reg' && (e.size ?? 0) > 0 && (e.size ?? 0) <= 16384 && !e.name.includes('landmark'))
    const pick = regs.find((e) => /etc\/os-release$/.test(e.name)) ?? regs[regs.length >> 1]
    if (!pick) throw new Error('no small regular file in the layer')
    const offsets = [...new Set(toc.entries.filter((e) => e.offset !== undefined).map((e) => e.offset as number)), tocOffset].sort((a, b) => a - b)
    const chunkTimes: number[] = []
    let chunkBytes = 0
    let how = 'direct member inflate'
    let got: Buffer = Buffer.alloc(0)
    type ReaderLike = { readFile(name: string): Promise<Buffer> }
    type ReaderModule = { EstargzReader: { open(src: RangeSource): Promise<ReaderLike> } }
    let readerMod: ReaderModule | undefined
    try {
      readerMod = (await import('../src/estargz/reader.js')) as unknown as ReaderModule
    } catch { /* not there: inflate by offset */ }
    for (let i = 0; i < runs; i++) {
      const src = await countingSource(blob)
      chunkTimes.push(await timeIt(async () => {
        if (readerMod) {
          how = 'EstargzReader.open + readFile (footer + TOC + chunk)'
          const r = await readerMod.EstargzReader.open(src)
          got = await r.readFile(pick.name.replace(/^\.?\//, ''))
        } else {
          const start = pick.offset as number
          const end = offsets.find((o) => o > start) ?? tocOffset
          got = gunzipSync(await src.read(start, end - start)).subarray(0, pick.size)
        }
      }))
      chunkBytes = src.bytesRead
      await src.close()
    }
    const ok = 'sha256:' + createHash('sha256').update(got).digest('hex') === (pick as TocEntry).digest
    const fullTimes: number[] = []
    for (let i = 0; i < runs; i++) {
      fullTimes.push(await timeIt(async () => {
        const g = createGunzip()
        g.resume() // consume the inflated bytes; only the time matters
        await pipeline(createReadStream(blob, { highWaterMark: 1 << 20 }), g)
      }))
    }
    out.push(`## cat ${pick.name} (${pick.size} bytes) from the ${(size / 1e6).toFixed(1)} MB blob (${runs} runs, medians)`, '')
    out.push('| method | median ms | bytes read | content ok |', '|---|---:|---:|---|')
    out.push(`| its chunk only (${how}) | ${(median(chunkTimes) * 1000).toFixed(2)} | ${chunkBytes} | ${ok} |`)
    out.push(`| gunzip the whole blob | ${(median(fullTimes) * 1000).toFixed(1)} | ${size} | — |`)
    process.stdout.write(out.join('\n') + '\n')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
