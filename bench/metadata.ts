/**
 * Metadata benchmark (issue #12): npm run bench:metadata -- [--sizes 10000,100000] [--skip-mount]
 *
 * 1. In process, per size: the previous path (JSON.parse of the whole TOC + validate + TocIndex +
 *    InodeTable: its heap per entry and time), the streaming build (TOC JSON → scanner →
 *    validator → columns → CompactIndex: time, heap growth at its peak), the compact file's
 *    size, write and re-open (read + sha256 + views) times, lookup time.
 * 2. Through the product path: a layer of N small files (N/100 directories) pushed to a
 *    docker-registry on 127.0.0.1, `stargz mount` as a separate process, with background fetch on
 *    (default) and off, for the previous implementation (STARGZ_INDEX=object: TocIndex objects,
 *    whole-JSON parse) and the current default (compact, streamed), and the current one again
 *    with the same --state-dir (the index re-opened from the persisted store, no TOC fetched).
 *    Per run: the layer open (TOC fetch + verify + index, from the layer-opened log line), time
 *    until `mounted` (includes node + tsx start-up), steady RSS (VmRSS after the walks) and peak
 *    (VmHWM) per entry, `find` (cold), `ls -lR` (warm), and python os.lstat of 10k files.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { buildMiniEstargz, type MiniFile } from '../harness/mini-estargz.js'
import { buildImage, sha256, skopeoPush, writeOciLayout } from '../harness/image.js'
import { startRegistry } from '../harness/registry.js'
import { REPO } from '../harness/cli.js'
import { TocIndex } from '../src/estargz/toc-index.js'
import { NO_PREFETCH_LANDMARK, PREFETCH_LANDMARK, TOC_DIGEST_ANNOTATION, type Toc } from '../src/estargz/types.js'
import { InodeTable } from '../src/fuse/inode-table.js'
import { listMounts, unmountPath } from '../src/fuse/unmount.js'
import { openIndexFile, writeIndexFile } from '../src/index/compact-index.js'
import { compactFromTocJson } from '../src/index/toc-build.js'
import { validateToc } from '../src/estargz/toc-validate.js'

const run = promisify(execFile)
const argv = process.argv
const opt = (name: string): string | undefined => { const i = argv.indexOf(`--${name}`); return i > 0 ? argv[i + 1] : undefined }
const SIZES = (opt('sizes') ?? '10000,100000').split(',').map(Number)
const SKIP_MOUNT = argv.includes('--skip-mount')
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined)
const ms = (t0: number): number => performance.now() - t0

function layerFiles(n: number): MiniFile[] {
  const files: MiniFile[] = []
  const dirs = Math.max(1, Math.round(n / 100))
  for (let d = 0; d < dirs; d++) files.push({ name: `d${d}`, type: 'dir' })
  for (let i = 0; files.length < n; i++) files.push({ name: `d${i % dirs}/f${i}`, data: Buffer.from(`file ${i} `.repeat(5)) })
  return files
}

async function inProcess(n: number, json: Buffer, tocOffset: number, dir: string): Promise<string> {
  gc(); const h0 = process.memoryUsage().heapUsed
  let t0 = performance.now()
  const toc: Toc = validateToc(JSON.parse(json.toString('utf8')), { tocOffset, footerKind: 'estargz' })
  const index = new TocIndex(toc, tocOffset, { prefetch: PREFETCH_LANDMARK, noPrefetch: NO_PREFETCH_LANDMARK })
  const tab = InodeTable.build(index)
  const objMs = ms(t0)
  gc(); const objHeap = process.memoryUsage().heapUsed - h0
  void tab
  gc(); const h1 = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers
  // Peak of the streaming build: sampled by a timer would miss it (synchronous); measure the
  // heap right after, before GC, which still holds what the build left as garbage.
  t0 = performance.now()
  const c = compactFromTocJson(json, { kind: 'estargz', size: 51, tocOffset }).index
  const packMs = ms(t0)
  const mu = process.memoryUsage()
  const streamPeak = mu.heapUsed + mu.arrayBuffers - h1
  const file = join(dir, `${n}.idx`)
  t0 = performance.now(); await writeIndexFile(file, c); const writeMs = ms(t0)
  t0 = performance.now(); const back = await openIndexFile(file); const openMs = ms(t0)
  t0 = performance.now()
  let found = 0
  for (let s = 0; s < back.count; s++) if (back.lookup(back.path(s)) === s) found++
  const lookupUs = (ms(t0) * 1000) / back.count
  if (found !== back.count) throw new Error('lookup mismatch')
  // (toc objects included in objHeap: the TocIndex keeps them)
  return `| ${n} | ${(objHeap / n).toFixed(0)} | ${objMs.toFixed(0)} | ${(c.byteLength() / n).toFixed(0)} | ${packMs.toFixed(0)} | ${(streamPeak / n).toFixed(0)} | ${writeMs.toFixed(1)} | ${openMs.toFixed(1)} | ${lookupUs.toFixed(2)} |`
}

interface Running { child: ChildProcess; log: () => string; exited: Promise<number | null> }

function startMount(args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'mount', ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { out += b.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, log: () => out, exited }
}

async function procKb(pid: number, key: 'VmRSS' | 'VmHWM'): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(new RegExp(`${key}:\\s+(\\d+)`).exec(s)?.[1] ?? 0)
}

async function shMs(cmd: string): Promise<number> {
  const t0 = performance.now()
  await run('sh', ['-c', cmd], { maxBuffer: 1 << 30 })
  return ms(t0)
}

const STAT_PY = 'import os,sys\nr=sys.argv[1]\nn=0\nfor d in sorted(os.listdir(r)):\n  for f in os.listdir(os.path.join(r,d)):\n    os.lstat(os.path.join(r,d,f)); n+=1\n    if n>=10000: break\n  if n>=10000: break\nprint(n)'

async function mountRun(n: number, ref: string, dir: string, label: string, env: NodeJS.ProcessEnv, extra: string[], stateName = label): Promise<string> {
  const mnt = join(dir, `mnt-${label.replace(/\W/g, '_')}-${n}`)
  await mkdir(mnt, { recursive: true })
  const t0 = performance.now()
  const m = startMount([ref, mnt, '--state-dir', join(dir, `state-${stateName.replace(/\W/g, '_')}-${n}`), '--hosts-dir', join(dir, 'certs.d'), '--plain-http', ...extra], env)
  try {
    while (!m.log().includes('"msg":"mounted"')) {
      if (m.child.exitCode !== null) throw new Error(`stargz mount exited ${m.child.exitCode}: ${m.log().slice(-2000)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
    const openMs = ms(t0)
    const opened = /\{[^\n]*"msg":"layer-opened"[^\n]*\}/.exec(m.log())?.[0]
    const layerMs = opened === undefined ? NaN : Number((JSON.parse(opened) as { ms: number }).ms)
    const from = opened === undefined ? '?' : String((JSON.parse(opened) as { from?: string }).from ?? 'registry')
    const pid = m.child.pid as number
    // Let background fetch run (it is what users get by default).
    await new Promise((r) => setTimeout(r, 3000))
    const find = await shMs(`find '${mnt}' > /dev/null`)
    await shMs(`ls -lR '${mnt}' > /dev/null`)
    const ls = await shMs(`ls -lR '${mnt}' > /dev/null`)
    const t1 = performance.now()
    const { stdout } = await run('python3', ['-c', STAT_PY, mnt])
    const statMs = ms(t1)
    const stats = Number(stdout.trim())
    await new Promise((r) => setTimeout(r, 1000))
    const rss = await procKb(pid, 'VmRSS')
    const hwm = await procKb(pid, 'VmHWM')
    const rate = (count: number, t: number): string => `${((count / t) * 1000 / 1000).toFixed(1)}k`
    return `| ${n} | ${label} | ${layerMs.toFixed(0)} (${from}) | ${openMs.toFixed(0)} | ${(rss / 1024).toFixed(0)} | ${((rss * 1024) / n).toFixed(0)} | ${((hwm * 1024) / n).toFixed(0)} | ${rate(n, find)} | ${rate(n, ls)} | ${rate(stats, statMs)} |`
  } finally {
    if (m.child.exitCode === null) m.child.kill('SIGTERM')
    await m.exited
    for (const mt of (await listMounts()).filter((x) => x.mountpoint.startsWith(dir + '/')).reverse()) await unmountPath(mt.mountpoint).catch(() => undefined)
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-bench-metadata-'))
  const reg = SKIP_MOUNT ? undefined : await startRegistry()
  const inproc: string[] = []
  const mounts: string[] = []
  try {
    for (const n of SIZES) {
      const mini = buildMiniEstargz(layerFiles(n))
      inproc.push(await inProcess(n, mini.tocJson, mini.tocOffset, dir))
      if (!reg) continue
      const layer = { data: mini.blob, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(gunzipSync(mini.blob)), annotations: { [TOC_DIGEST_ANNOTATION]: mini.tocDigest } }
      const layout = join(dir, `layout-${n}`)
      await writeOciLayout(layout, 'v1', [buildImage({ layers: [layer] })])
      const ref = `${reg.host}/bench/meta${n}:v1`
      await skopeoPush(layout, 'v1', ref)
      for (const [label, env] of [['previous (object)', { STARGZ_INDEX: 'object' }], ['current (compact)', {}]] as Array<[string, NodeJS.ProcessEnv]>) {
        mounts.push(await mountRun(n, ref, dir, `${label}, background fetch`, env, []))
        mounts.push(await mountRun(n, ref, dir, `${label}, --no-background-fetch`, env, ['--no-background-fetch']))
      }
      // Same state dir as the run before: the index comes from the persisted store.
      mounts.push(await mountRun(n, ref, dir, 'current, re-open from persisted index, --no-background-fetch', {}, ['--no-background-fetch'], 'current (compact), --no-background-fetch'))
    }
  } finally {
    await reg?.close()
    await rm(dir, { recursive: true, force: true })
  }
  console.log('| entries | previous: parse+objects heap B/entry | previous ms | compact B/entry | streaming build ms | streaming build heap growth B/entry | write ms | re-open ms | lookup µs |')
  console.log('|---|---|---|---|---|---|---|---|---|')
  for (const r of inproc) console.log(r)
  if (mounts.length === 0) return
  console.log('\n| entries | run | layer open ms (index from) | mounted after ms | steady RSS MiB | steady B/entry | peak B/entry | find /s | ls -lR warm /s | lstat 10k /s |')
  console.log('|---|---|---|---|---|---|---|---|---|---|')
  for (const r of mounts) console.log(r)
}

await main()
