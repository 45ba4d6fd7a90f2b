/**
 * Issue #10 §3, "chunk-size bombs": a 4 KiB read of a 1 GiB single-chunk file must keep the
 * serving process under 150 MiB RSS. The file is one eStargz chunk in a layer on a real
 * docker-registry; `stargz mount` runs as its own process (as users run it); we read 4 KiB
 * through FUSE and report the process's peak RSS (VmHWM), for:
 *   - default settings (memory chunk cache, prefetch and background fetch on),
 *   - --no-background-fetch,
 *   - --cache-dir (disk cache: the chunk is streamed into it once, then served by range).
 *
 *   npm run bench:bigchunk -- [--size-mb 1024] [--compare-repo DIR] [--small-files N]
 *
 * --small-files N (issue #12, memory cache retention): the layer holds N 50-byte files in 1,000
 * directories besides big.bin (then of --size-mb, in default 4 MiB chunks), so background fetch
 * fills the memory cache with N tiny chunks; the same cases are measured.
 *
 * --compare-repo runs the same cases with the `stargz` CLI of another checkout (e.g. a worktree
 * of the commit before the fix) in the same run. Each checkout is compiled (tsc → dist/) and its
 * compiled CLI is measured, as installed. The fixture is built in a temp dir and deleted.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { hostname, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { convertLayer } from '../src/estargz/writer.js'
import { TOC_DIGEST_ANNOTATION } from '../src/estargz/types.js'
import { RegistryClient } from '../src/registry/client.js'
import { startRegistry } from '../harness/registry.js'
import { buildImage } from '../harness/image.js'
import { unmountUnder } from '../harness/containerd.js'

const run = promisify(execFile)
const argVal = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : undefined
}
const SIZE = Number(argVal('size-mb') ?? 1024) * 1024 * 1024
const COMPARE = argVal('compare-repo')
const SMALL = Number(argVal('small-files') ?? 0)
const REPO = new URL('..', import.meta.url).pathname
const READ_AT = Math.floor(SIZE * 0.6) & ~4095

/** Deterministic bytes that deflate about 2:1 (16 symbols), generated piece by piece. */
function piece(offset: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  let x = (offset / 4096 + 0x9e3779b9) >>> 0 || 1
  for (let i = 0; i < n; i++) {
    if ((i & 4095) === 0) x = ((offset + i) / 4096 + 0x9e3779b9) >>> 0 || 1
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    b[i] = 0x40 | (x & 0x0f)
  }
  return b
}

async function writeBigFile(path: string): Promise<void> {
  const out = createWriteStream(path)
  const step = 16 << 20
  for (let off = 0; off < SIZE; off += step) {
    if (!out.write(piece(off, Math.min(step, SIZE - off)))) await new Promise<void>((r) => out.once('drain', () => r()))
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())))
}

interface Case { label: string; flags: string[]; repo: string; build: string }
interface Result { label: string; build: string; peakMiB: number; afterMountMiB: number; mountPeakMiB: number; readMs: number; ok: boolean; note: string }

async function status(pid: number): Promise<{ rss: number; hwm: number }> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0)
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 }
}

function startMount(repo: string, args: string[]): { child: ChildProcess; log: () => string; waitFor: (msg: string, ms: number) => Promise<boolean> } {
  // The compiled CLI, as installed (tsx would add its own compiler's memory to the figure).
  const child = spawn(process.execPath, ['dist/src/cli/main.js', 'mount', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  child.stdout?.on('data', (b: Buffer) => { log += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { log += b.toString() })
  const waitFor = (msg: string, ms: number): Promise<boolean> => new Promise((resolve) => {
    const deadline = Date.now() + ms
    const tick = (): void => {
      if (log.includes(`"msg":"${msg}"`)) return resolve(true)
      if (child.exitCode !== null || Date.now() > deadline) return resolve(false)
      setTimeout(tick, 100)
    }
    tick()
  })
  return { child, log: () => log, waitFor }
}

async function runCase(c: Case, ref: string, dir: string, hosts: string, expect: Buffer): Promise<Result> {
  const mnt = join(dir, `mnt-${c.label.replace(/\W+/g, '-')}-${c.build}`)
  await mkdir(mnt)
  const state = `${mnt}.state`
  const m = startMount(c.repo, [ref, mnt, '--state-dir', state, '--hosts-dir', hosts, '--plain-http', ...c.flags.map((f) => f.replace('@CACHE', `${mnt}.cache`))])
  let peak = 0
  const pid = m.child.pid as number
  const sampler = setInterval(() => { status(pid).then((s) => { peak = Math.max(peak, s.hwm) }, () => undefined) }, 100)
  try {
    if (!(await m.waitFor('mounted', 300_000))) throw new Error(`stargz mount did not come up: ${m.log().slice(-2000)}`)
    const atMount = await status(pid)
    const afterMount = atMount.rss
    const mountPeak = atMount.hwm
    const t0 = performance.now()
    let got: Buffer | undefined
    let note = ''
    try {
      const r = await run('dd', [`if=${mnt}/big.bin`, 'bs=4096', 'count=1', `skip=${READ_AT / 4096}`, 'status=none'], { encoding: 'buffer', maxBuffer: 1 << 20, timeout: 600_000 })
      got = r.stdout
    } catch (e) {
      const failed = m.log().split('\n').filter((l) => l.includes('read-failed') || l.includes('chunk-read-failed')).slice(-1)[0] ?? ''
      note = `read failed: ${String((e as { stderr?: Buffer }).stderr ?? '').trim()} ${failed.slice(0, 600)}`
    }
    const readMs = performance.now() - t0
    // Give background fetch the time it takes (it is what blew memory up before).
    if (!c.flags.includes('--no-background-fetch')) {
      const done = await m.waitFor('background-fetch-done', 300_000)
      if (!done) note += (note ? '; ' : '') + 'background fetch not done in 300 s'
    }
    await new Promise((r) => setTimeout(r, 1000))
    if (m.child.exitCode !== null) throw new Error(`stargz mount exited with ${m.child.exitCode}: ${m.log().slice(-3000)}`)
    const s = await status(pid)
    peak = Math.max(peak, s.hwm)
    const ok = got !== undefined && got.equals(expect)
    return { label: c.label, build: c.build, peakMiB: peak / 2 ** 20, afterMountMiB: afterMount / 2 ** 20, mountPeakMiB: mountPeak / 2 ** 20, readMs, ok, note }
  } finally {
    clearInterval(sampler)
    m.child.kill('SIGTERM')
    await new Promise((r) => { if (m.child.exitCode !== null) r(undefined); else m.child.once('exit', r) })
    await unmountUnder(mnt).catch(() => undefined)
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-bigchunk-'))
  const reg = await startRegistry()
  try {
    const src = join(dir, 'src')
    await mkdir(src)
    await writeBigFile(join(src, 'big.bin'))
    for (let i = 0; i < SMALL; i++) {
      if (i < 1000) await mkdir(join(src, `d${i % 1000}`), { recursive: true })
      await writeFile(join(src, `d${i % 1000}`, `f${i}`), `small file number ${i} `.padEnd(50, '.'))
    }
    const tar = join(dir, 'layer.tar')
    await run('tar', ['-C', src, '-cf', tar, '.'], { maxBuffer: 1 << 24 })
    await rm(src, { recursive: true, force: true })
    const blobPath = join(dir, 'layer.estargz')
    // One chunk for the whole file: the writer's largest chunk size.
    const conv = await convertLayer(createReadStream(tar), createWriteStream(blobPath), SMALL > 0 ? {} : { chunkSize: 2 ** 31 - 1 })
    await rm(tar, { force: true })
    const blob = await readFile(blobPath)
    const img = buildImage({ layers: [{ data: blob, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } }] })
    const hosts = join(dir, 'certs.d')
    const client = new RegistryClient({ plainHttp: true, hostsDir: hosts })
    const ref = `${reg.host}/bench/bigchunk:v1`
    await client.pushImage(ref, img.config, img.layers)
    await client.close()
    const blobBytes = (await stat(blobPath)).size
    await rm(blobPath, { force: true })
    const expect = piece(READ_AT, 4096)

    const builds: Array<{ repo: string; build: string }> = [{ repo: REPO, build: 'this' }]
    if (COMPARE) builds.push({ repo: COMPARE, build: 'compare' })
    for (const b of builds) {
      // The shipped build (tsconfig.build.json), or for an older checkout its only tsconfig.
      const build = await stat(join(b.repo, 'tsconfig.build.json')).then(() => 'tsconfig.build.json', () => 'tsconfig.json')
      await run(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(b.repo, build)], { cwd: b.repo, maxBuffer: 1 << 24 })
    }
    const results: Result[] = []
    for (const b of builds) {
      for (const [label, flags] of [
        ['default (memory cache, background fetch on)', []],
        ['--no-background-fetch', ['--no-background-fetch']],
        ['--cache-dir (disk cache, background fetch on)', ['--cache-dir', '@CACHE']],
      ] as Array<[string, string[]]>) {
        // A case that fails (the mount dies) is a result too, not the end of the run.
        const r = await runCase({ label, flags, repo: b.repo, build: b.build }, ref, dir, hosts, expect).catch((e: unknown): Result => (
          { label, build: b.build, peakMiB: NaN, afterMountMiB: NaN, mountPeakMiB: NaN, readMs: NaN, ok: false, note: `failed: ${/E[A-Z]+: [^"\\]*/.exec(String(e))?.[0] ?? String(e).slice(0, 200)}` }))
        results.push(r)
        console.error(JSON.stringify(r))
      }
    }
    const head = (await run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])).stdout.trim()
    const cmp = COMPARE ? (await run('git', ['-C', COMPARE, 'rev-parse', '--short', 'HEAD']).then((r) => r.stdout.trim(), () => COMPARE)) : undefined
    console.log(SMALL > 0
      ? `### ${SMALL} small files + a ${SIZE >> 20} MiB file (4 MiB chunks) through \`stargz mount\` (separate process, registry on loopback), 4 KiB read, background fetch to the end`
      : `### 4 KiB read of a ${SIZE >> 20} MiB single-chunk file through \`stargz mount\` (separate process, registry on loopback)`)
    console.log(`${new Date().toISOString().slice(0, 10)}, ${hostname()}, ${cpus().length} vCPU ${cpus()[0]?.model ?? ''}, Node ${process.version}; blob ${(blobBytes / 1e6).toFixed(0)} MB (one gzip member); load average at end ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}`)
    console.log(`builds: this = ${head}${cmp ? `, compare = ${cmp}` : ''}; peak = VmHWM of the stargz mount process, including background fetch until done`)
    console.log('')
    console.log('| build | settings | peak RSS (MiB) | peak until mounted (MiB) | RSS after mount (MiB) | 4 KiB read (s) | bytes right | note |')
    console.log('|---|---|---:|---:|---:|---:|---|---|')
    for (const r of results) console.log(`| ${r.build} | ${r.label} | ${r.peakMiB.toFixed(0)} | ${r.mountPeakMiB.toFixed(0)} | ${r.afterMountMiB.toFixed(0)} | ${(r.readMs / 1000).toFixed(1)} | ${r.ok ? 'yes' : 'NO'} | ${r.note} |`)
  } finally {
    await unmountUnder(dir).catch(() => undefined)
    await reg.close()
    await rm(dir, { recursive: true, force: true })
  }
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1) })
