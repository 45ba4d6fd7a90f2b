/**
 * Cold sequential read of a 256 MB file from an eStargz layer on a real docker-registry, through
 * `stargz mount` (FUSE, chunk fetch + inflate + verify), against `curl -r | gunzip` of exactly the
 * same gzip members in the same run; then the warm read (page cache) against tmpfs.
 *
 *   node --import tsx bench/lazy-read.ts [--runs 3] [--size-mb 256]
 *
 * Every lazy run uses a fresh mount with background fetch and prefetch off, so each read is cold.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { convertLayer } from '../src/estargz/writer.js'
import { EstargzReader } from '../src/estargz/reader.js'
import { FileRangeSource } from '../src/estargz/file-source.js'
import { RegistryClient } from '../src/registry/client.js'
import { TOC_DIGEST_ANNOTATION } from '../src/estargz/types.js'
import { startRegistry } from '../harness/registry.js'
import { buildImage } from '../harness/image.js'
import { unmountUnder } from '../harness/containerd.js'

const run = promisify(execFile)
const argNum = (name: string, d: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : d
}
const RUNS = argNum('runs', 3)
const SIZE = argNum('size-mb', 256) << 20
const REPO = new URL('..', import.meta.url).pathname
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

async function timedSh(cmd: string): Promise<number> {
  const t0 = performance.now()
  await run('bash', ['-c', cmd], { maxBuffer: 1 << 20 })
  return performance.now() - t0
}

/** Binary-ish data that compresses about 2:1, like executables and libraries. */
function fileData(size: number): Buffer {
  const b = Buffer.allocUnsafe(size)
  let x = 0x9e3779b9
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    b.writeUInt32LE((i & 0x100) === 0 ? (x >>> 0) : (i * 7) >>> 0, i)
  }
  return b
}

function startMount(ref: string, mnt: string, state: string, hosts: string): { child: ChildProcess; ready: Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'mount', ref, mnt, '--state-dir', state, '--hosts-dir', hosts, '--plain-http', '--no-prefetch', '--no-background-fetch'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  const ready = new Promise<void>((resolve, reject) => {
    const on = (b: Buffer): void => { log += b.toString(); if (log.includes('"msg":"mounted"')) resolve() }
    child.stdout?.on('data', on)
    child.stderr?.on('data', on)
    child.on('exit', (code) => reject(new Error(`stargz mount exited ${code}: ${log}`)))
  })
  return { child, ready }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-lazyread-'))
  const reg = await startRegistry()
  try {
    const data = fileData(SIZE)
    const src = join(dir, 'src')
    await mkdir(src)
    await writeFile(join(src, 'big.bin'), data)
    const tar = join(dir, 'layer.tar')
    await run('tar', ['-C', src, '-cf', tar, 'big.bin'])
    const blobPath = join(dir, 'layer.estargz')
    const { createReadStream, createWriteStream } = await import('node:fs')
    const conv = await convertLayer(createReadStream(tar), createWriteStream(blobPath))
    const blob = await readFile(blobPath)
    const img = buildImage({ layers: [{ data: blob, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } }] })
    const hosts = join(dir, 'certs.d')
    const client = new RegistryClient({ plainHttp: true, hostsDir: hosts })
    const ref = `${reg.host}/bench/lazyread:v1`
    await client.pushImage(ref, img.config, img.layers)
    await client.close()
    const src2 = await FileRangeSource.open(blobPath)
    const reader = await EstargzReader.open(src2)
    const refs = reader.index.chunks('big.bin')
    const first = refs[0]!
    const last = refs[refs.length - 1]!
    await src2.close()
    const digest = 'sha256:' + createHash('sha256').update(blob).digest('hex')
    const url = `${reg.url}/v2/bench/lazyread/blobs/${digest}`
    const curlCmd = `curl -sf -r ${first.compressedOffset}-${last.compressedEnd - 1} '${url}' | gunzip -c > /dev/null 2>&1 || true`
    const curlCmdCheck = `curl -sf -r ${first.compressedOffset}-${last.compressedEnd - 1} '${url}' | gunzip -c 2>/dev/null | head -c ${SIZE} | sha256sum`
    const check = (await run('bash', ['-c', curlCmdCheck])).stdout.split(' ')[0]
    if (check !== createHash('sha256').update(data).digest('hex')) throw new Error('curl | gunzip baseline does not reproduce the file')

    const lazy: number[] = []
    const curl: number[] = []
    let warm = 0
    for (let i = 0; i < RUNS; i++) {
      await run('bash', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'])
      curl.push((SIZE / 1e6) / ((await timedSh(curlCmd)) / 1000))
      const mnt = join(dir, `mnt${i}`)
      await mkdir(mnt)
      const m = startMount(ref, mnt, join(dir, `state${i}`), hosts)
      await m.ready
      try {
        lazy.push((SIZE / 1e6) / ((await timedSh(`dd if='${mnt}/big.bin' of=/dev/null bs=1M 2>/dev/null`)) / 1000))
        if (i === RUNS - 1) warm = (SIZE / 1e6) / ((await timedSh(`dd if='${mnt}/big.bin' of=/dev/null bs=1M 2>/dev/null`)) / 1000)
      } finally {
        m.child.kill('SIGTERM')
        await new Promise((r) => m.child.once('exit', r))
      }
    }
    const shm = await mkdtemp('/dev/shm/stargz-lazyread-')
    await writeFile(join(shm, 'big.bin'), data)
    await timedSh(`cat '${shm}/big.bin' > /dev/null`)
    const tmpfs = (SIZE / 1e6) / ((await timedSh(`dd if='${shm}/big.bin' of=/dev/null bs=1M 2>/dev/null`)) / 1000)
    await rm(shm, { recursive: true, force: true })

    const lz = median(lazy)
    const cu = median(curl)
    console.log(`### Lazy read through FUSE from a real registry (loopback), ${SIZE >> 20} MiB file, ${refs.length} chunks, blob ${(blob.length / 1e6).toFixed(1)} MB, ${RUNS} runs, medians`)
    console.log(`load average at start: ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}`)
    console.log('')
    console.log('| read | MB/s | runs | ratio |')
    console.log('|---|---:|---|---:|')
    console.log(`| cold, stargz mount (range GETs + inflate + verify + FUSE) | ${lz.toFixed(0)} | ${lazy.map((x) => x.toFixed(0)).join(', ')} | ${(lz / cu).toFixed(2)}× curl |`)
    console.log(`| cold, curl -r of the same members \\| gunzip (no verify, no FUSE) | ${cu.toFixed(0)} | ${curl.map((x) => x.toFixed(0)).join(', ')} | 1.00× |`)
    console.log(`| warm, stargz mount (page cache) | ${warm.toFixed(0)} | 1 | ${(warm / tmpfs).toFixed(2)}× tmpfs |`)
    console.log(`| tmpfs, same file | ${tmpfs.toFixed(0)} | 1 | 1.00× |`)
  } finally {
    await unmountUnder(dir).catch(() => undefined)
    await reg.close()
    await rm(dir, { recursive: true, force: true })
  }
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1) })
