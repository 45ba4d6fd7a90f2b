/**
 * Our FUSE protocol backend (src/fuseproto) against fuse-native, in one run, and the time a
 * reader waits when the serving process is killed -9 and a new one adopts the connection.
 *
 *   npm run bench:fuseproto [-- --files N --rounds R]
 *
 * Throughput: one layer (N small files + one 64 MiB file, converted by our writer, read through
 * BlobReader: every read inflates and verifies), mounted afresh per round with each backend in
 * turn; all I/O runs in child processes. Recovery: harness/fuseproto-serve.ts serves the layer
 * with an fd holder, a reader process reads file after file and stamps each read; the server is
 * killed -9 and a new one started at once: gap = first read completed after the kill − the kill.
 * Prints a Markdown table (medians over rounds).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { blobFromTree, fileDigest, readerLayer } from '../harness/fuse-fixtures.js'
import { patternBytes } from '../harness/tree.js'
import { FileRangeSource } from '../src/estargz/file-source.js'
import { LayerMount, type MountBackend } from '../src/fuse/layer-fs.js'
import { ProtoBackend } from '../src/fuseproto/backend.js'
import { HolderClient } from '../src/fuseproto/holder.js'
import { unmountPath } from '../src/fuse/unmount.js'
import { BlobReader } from '../src/reader/blob-reader.js'

const run = promisify(execFile)
const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const FILES = arg('files', 5000)
const ROUNDS = arg('rounds', 3)
const BIG = 64 << 20
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] as number }

async function ms(cmd: string): Promise<number> {
  const t0 = performance.now()
  await run('sh', ['-c', cmd], { maxBuffer: 1 << 30 })
  return performance.now() - t0
}

const dir = await mkdtemp(join(tmpdir(), 'bench-fuseproto-'))
try {
  const nodes = [
    ...Array.from({ length: FILES }, (_, i) => ({ type: 'file' as const, path: `s/d${i % 50}/f${i}`, content: patternBytes(200 + (i * 37) % 4000, i), mode: 0o644 })),
    { type: 'file' as const, path: 'big', content: patternBytes(BIG, 7), mode: 0o644 },
  ]
  const { blob } = await blobFromTree(dir, nodes)
  const digest = await fileDigest(blob)
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const proto = new ProtoBackend({ log: pino({ level: 'silent' }) })
  const results: Record<string, Record<string, number[]>> = { 'fuse-native': {}, proto: {} }
  const note = (backend: string, k: string, v: number): void => { ((results[backend] as Record<string, number[]>)[k] ??= []).push(v) }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, backend] of [['fuse-native', undefined], ['proto', proto]] as Array<[string, MountBackend | undefined]>) {
      const reader = await BlobReader.open(await FileRangeSource.open(blob))
      const layer = readerLayer(reader, digest)
      const t0 = performance.now()
      const m = await LayerMount.mount(layer, mnt, { ...(backend ? { backend } : {}), readAheadKib: 1024 })
      note(name, 'mount ms', performance.now() - t0)
      note(name, 'ls -lR (cold) ms', await ms(`ls -lR '${mnt}' >/dev/null`))
      note(name, `cat ${FILES} small files (cold) ms`, await ms(`find '${mnt}/s' -type f -exec cat {} + >/dev/null`))
      note(name, 'dd 64 MiB cold MB/s', (BIG / 2 ** 20) / ((await ms(`dd if='${mnt}/big' of=/dev/null bs=1M 2>/dev/null`)) / 1000))
      note(name, 'dd 64 MiB O_DIRECT MB/s', (BIG / 2 ** 20) / ((await ms(`dd if='${mnt}/big' of=/dev/null bs=1M iflag=direct 2>/dev/null`)) / 1000))
      await m.close()
      await layer.close()
    }
  }

  // Recovery after kill -9 of the serving process.
  const holderSock = join(dir, 'holder.sock')
  const holder = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'daemon/fused-holder.ts'), '--socket', holderSock], { stdio: 'ignore' })
  const hc = new HolderClient(holderSock)
  for (let i = 0; i < 400 && !(await hc.hello().then(() => true, () => false)); i++) await sleep(50)
  const serve = (): { child: ChildProcess; ready: Promise<number> } => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'harness/fuseproto-serve.ts'), blob, mnt, holderSock], { stdio: ['ignore', 'pipe', 'inherit'] })
    const ready = new Promise<number>((resolve) => child.stdout?.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(Date.now()) }))
    return { child, ready }
  }
  let server = serve()
  await server.ready
  const gaps: number[] = []
  const starts: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const script = `const fs=require('fs');const p=require('path');let i=0;const n=${FILES};
      for(;;){fs.readFileSync(p.join(${JSON.stringify(mnt)},'s','d'+(i%50),'f'+i));console.log(Date.now());i=(i+1)%n; if(i===0)break}`
    const reader = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] })
    const stamps: number[] = []
    reader.stdout?.setEncoding('utf8').on('data', (d: string) => { for (const l of d.split('\n')) if (l) stamps.push(Number(l)) })
    while (stamps.length < 200) await sleep(10)
    const killedAt = Date.now()
    server.child.kill('SIGKILL')
    await new Promise((r2) => server.child.once('exit', r2))
    const spawnedAt = Date.now()
    server = serve()
    const readyAt = await server.ready
    while (!stamps.some((s) => s > readyAt) && reader.exitCode === null) await sleep(5)
    const first = stamps.find((s) => s > killedAt) ?? NaN
    gaps.push(first - killedAt)
    starts.push(readyAt - spawnedAt)
    reader.kill('SIGKILL')
  }
  server.child.kill('SIGTERM')
  await new Promise((r2) => server.child.once('exit', r2))
  holder.kill('SIGTERM')

  const keys = Object.keys(results['proto'] as Record<string, number[]>)
  console.log(`\n${FILES} small files + 64 MiB, ${ROUNDS} rounds, medians (${new Date().toISOString()})\n`)
  console.log('| measure | fuse-native | proto (ours) | proto / native |')
  console.log('|---|---|---|---|')
  for (const k of keys) {
    const a = median((results['fuse-native'] as Record<string, number[]>)[k] as number[])
    const b = median((results['proto'] as Record<string, number[]>)[k] as number[])
    console.log(`| ${k} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(b / a).toFixed(2)} |`)
  }
  console.log(`| kill -9 → first read served by the new process, ms | – | ${median(gaps)} (all: ${gaps.join(', ')}) | |`)
  console.log(`| of which: new process start → serving (node + tsx + TOC), ms | – | ${median(starts)} (all: ${starts.join(', ')}) | |`)
} finally {
  await unmountPath(join(dir, 'mnt')).catch(() => undefined)
  await rm(dir, { recursive: true, force: true })
}
