/**
 * The serving process of a protocol-backend mount dies (kill -9, twice) and a new one adopts the
 * connection from the fd holder: a reader in another process sees every file with the right
 * bytes and no error — its reads wait while nobody serves, and the ones the dead server had
 * read but not answered are resent (FUSE_NOTIFY_RESEND). Afterwards nothing is left: no mount,
 * no held fd, no process.
 */
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { blobFromTree, scratch } from '../../harness/fuse-fixtures.js'
import { patternBytes } from '../../harness/tree.js'
import { HolderClient } from '../../src/fuseproto/holder.js'
import { isMounted } from '../../src/fuse/unmount.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const TSX = ['--import', 'tsx']

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false
  try { process.kill(pid, 0); return true } catch { return false }
}

async function exited(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return
  await new Promise((r) => c.once('exit', r))
}

function startServer(blob: string, mnt: string, holder: string, delayMs: number, env: Record<string, string> = {}): { child: ChildProcess; ready: Promise<string>; out: () => string } {
  const child = spawn(process.execPath, [...TSX, join(ROOT, 'harness/fuseproto-serve.ts'), blob, mnt, holder, String(delayMs)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  let out = ''
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (d: string) => {
      out += d
      const m = /ready (\w+)/.exec(out)
      if (m) resolve(m[1] as string)
    })
    child.once('exit', (code, sig) => reject(new Error(`server exited (${code ?? sig}) before ready`)))
  })
  return { child, ready, out: () => out }
}

t.test('kill -9 of the serving process twice: a reader in another process never sees an error', async (t) => {
  const dir = await scratch(t, 'stargz-fuseproto-')
  const N = 120
  const nodes = Array.from({ length: N }, (_, i) => ({ type: 'file' as const, path: `d${i % 7}/f${i}`, content: patternBytes(1000 + ((i * 7919) % 200_000), i), mode: 0o644 }))
  const { blob } = await blobFromTree(dir, nodes, { chunkSize: 64 * 1024 })
  const want = new Map(nodes.map((n) => [n.path, createHash('sha256').update(n.content).digest('hex')]))
  const mnt = join(dir, 'mnt')
  const holderSock = join(dir, 'holder.sock')
  await import('node:fs/promises').then((f) => f.mkdir(mnt, { recursive: true }))

  const holder = spawn(process.execPath, [...TSX, join(ROOT, 'daemon/fused-holder.ts'), '--socket', holderSock], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  const servers: ChildProcess[] = []
  t.teardown(async () => {
    for (const s of servers) if (alive(s.pid)) s.kill('SIGKILL')
    if (alive(holder.pid)) holder.kill('SIGTERM')
    await exited(holder)
  })
  const hc = new HolderClient(holderSock)
  for (let i = 0; i < 200; i++) { if (await hc.hello().then(() => true, () => false)) break; await sleep(50) }

  const s1 = startServer(blob, mnt, holderSock, 40)
  servers.push(s1.child)
  t.equal(await s1.ready, 'fresh', 'first server mounts a fresh connection')
  t.equal((await hc.list()).entries.length, 1, 'the holder keeps a copy of its fd')

  // The reader: its own process, every file in turn, a hash per line; any error ends it non-zero.
  const script = `
    const fs = require('fs'), c = require('crypto'), p = require('path');
    const files = ${JSON.stringify(nodes.map((n) => n.path))};
    for (const f of files) { const b = fs.readFileSync(p.join(${JSON.stringify(mnt)}, f)); console.log(f + ' ' + c.createHash('sha256').update(b).digest('hex')); }`
  const reader = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  reader.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d })
  reader.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d })
  const readerDone = new Promise<number>((r) => reader.once('exit', (code) => r(code ?? -1)))
  const linesNow = (): number => out.split('\n').filter(Boolean).length

  while (linesNow() < 10) await sleep(20)
  s1.child.kill('SIGKILL')
  await exited(s1.child)
  const atKill1 = linesNow()
  await sleep(700) // nobody serves: the reader waits
  const duringGap = linesNow()
  const s2 = startServer(blob, mnt, holderSock, 40)
  servers.push(s2.child)
  t.equal(await s2.ready, 'adopted', 'second server adopts the held connection')

  while (linesNow() < atKill1 + 20) await sleep(20)
  s2.child.kill('SIGKILL')
  await exited(s2.child)
  const atKill2 = linesNow()
  const s3 = startServer(blob, mnt, holderSock, 0)
  servers.push(s3.child)
  t.equal(await s3.ready, 'adopted', 'third server adopts it again')

  t.equal(await readerDone, 0, `reader finished without an error ${err}`)
  t.ok(duringGap <= atKill1 + 1, 'reads waited while no server ran')
  t.ok(atKill1 < N && atKill2 < N, 'both kills happened mid-pass')
  const got = new Map(out.split('\n').filter(Boolean).map((l) => l.split(' ') as [string, string]))
  t.equal(got.size, N, 'every file read')
  let wrong = 0
  for (const [f, h] of want) if (got.get(f) !== h) wrong++
  t.equal(wrong, 0, 'every file has the right bytes')

  s3.child.kill('SIGTERM')
  await exited(s3.child)
  t.notOk(await isMounted(mnt), 'unmounted by the last server')
  t.equal((await hc.list()).entries.length, 0, 'the holder dropped its copy on unmount')
  const before = await readFile('/proc/self/mountinfo', 'utf8')
  t.notOk(before.includes(mnt), 'no mount left')
})

t.test('a read the dead server had taken but not answered is resent to the new one', async (t) => {
  const dir = await scratch(t, 'stargz-fuseproto-')
  const content = patternBytes(300_000, 3)
  const { blob } = await blobFromTree(dir, [{ type: 'file', path: 'd/f', content, mode: 0o644 }])
  const mnt = join(dir, 'mnt')
  const holderSock = join(dir, 'holder.sock')
  await import('node:fs/promises').then((f) => f.mkdir(mnt, { recursive: true }))
  const holder = spawn(process.execPath, [...TSX, join(ROOT, 'daemon/fused-holder.ts'), '--socket', holderSock], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  const servers: ChildProcess[] = []
  t.teardown(async () => {
    for (const s of servers) if (alive(s.pid)) s.kill('SIGKILL')
    if (alive(holder.pid)) holder.kill('SIGTERM')
    await exited(holder)
  })
  const hc = new HolderClient(holderSock)
  for (let i = 0; i < 200; i++) { if (await hc.hello().then(() => true, () => false)) break; await sleep(50) }
  // The first server takes every read and never answers it (10 min delay).
  const s1 = startServer(blob, mnt, holderSock, 600_000)
  servers.push(s1.child)
  await s1.ready
  const reader = spawn('md5sum', [join(mnt, 'd/f')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let sum = ''
  reader.stdout?.setEncoding('utf8').on('data', (d: string) => { sum += d })
  const readerDone = new Promise<number>((r) => reader.once('exit', (c) => r(c ?? -1)))
  while (!s1.out().includes('reading d/f')) await sleep(20)
  s1.child.kill('SIGKILL')
  await exited(s1.child)
  const s2 = startServer(blob, mnt, holderSock, 0, { LOG_LEVEL: 'info' })
  servers.push(s2.child)
  t.equal(await s2.ready, 'adopted')
  t.equal(await readerDone, 0, 'the reader finished without an error')
  t.equal(sum.split(' ')[0], createHash('md5').update(content).digest('hex'), 'with the right bytes')
  t.match(s2.out(), /fuse-resent-request-served/, 'the new server answered a request the kernel resent')
  s2.child.kill('SIGTERM')
  await exited(s2.child)
  t.notOk(await isMounted(mnt), 'unmounted')
})
