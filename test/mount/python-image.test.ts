/**
 * `stargz mount` of a real debootstrap python3 image (two layers, the upper one with a whiteout
 * and an opaque directory), from the real docker-registry, in a child process:
 * - `chroot MOUNTPOINT python3 -c 'print(1)'` works;
 * - a walk of the whole merged tree (names, types, modes, uid/gid, sizes, mtimes, symlink
 *   targets, xattrs, hardlink identity, bytes) equals `tar -xpf` of the original layers applied
 *   in order (whiteouts applied the way a runtime applies them).
 * Then a registry that dies mid-read: reads fail with EIO in bounded time, and work again once
 * it is back.
 */
import t from 'tap'
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { randomBytes } from 'node:crypto'
import { convertFile } from '../../harness/convert.js'
import { REPO } from '../../harness/cli.js'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, sha256, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { snapshotTree, tempDir } from '../../harness/tree.js'
import { mountsUnder, unmountUnder } from '../../harness/containerd.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'

const execFileP = promisify(execFile)
t.setTimeout(900_000)

interface Running { child: ChildProcess; log: () => string; exited: Promise<number | null> }

function startMount(args: string[]): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'mount', ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { out += b.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, log: () => out, exited }
}

async function waitMounted(r: Running): Promise<void> {
  const deadline = Date.now() + 300_000
  while (!r.log().includes('"msg":"mounted"')) {
    if (r.child.exitCode !== null) throw new Error(`stargz mount exited ${r.child.exitCode}: ${r.log()}`)
    if (Date.now() > deadline) throw new Error(`stargz mount did not get ready: ${r.log()}`)
    await new Promise((res) => setTimeout(res, 100))
  }
}

async function stop(r: Running): Promise<number | null> {
  if (r.child.exitCode === null) r.child.kill('SIGTERM')
  return r.exited
}

/** Build an eStargz image from layer tars, push it, return its reference. */
async function pushEstargz(dir: string, host: string, repo: string, tars: string[]): Promise<{ ref: string; blobs: Buffer[] }> {
  const layers = []
  const blobs: Buffer[] = []
  for (const [i, tar] of tars.entries()) {
    const out = join(dir, `${repo.replace(/\W/g, '_')}-${i}.estargz`)
    const conv = await convertFile(tar, out)
    const data = await readFile(out)
    blobs.push(data)
    layers.push({ data, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } })
  }
  const layout = join(dir, `layout-${repo.replace(/\W/g, '_')}`)
  await writeOciLayout(layout, 'v1', [buildImage({ layers })])
  const ref = `${host}/${repo}:v1`
  await skopeoPush(layout, 'v1', ref)
  return { ref, blobs }
}

t.test('python3 image: chroot runs python, merged tree equals ordered extraction', async (t) => {
  const dir = await tempDir(t, 'stargz-pyimg-')
  t.teardown(async () => { await unmountUnder(dir) })
  const reg = await startRegistry()
  t.teardown(() => reg.close())

  const base = execFileSync('bash', [join(REPO, 'scripts/fixtures/python-rootfs.sh')], { encoding: 'utf8' }).trim()
  // Upper layer: an app file, a whiteout of /etc/motd (or another file the base has), and an
  // opaque /usr/share/doc replaced by one file.
  const up = join(dir, 'upper-src')
  await mkdir(join(up, 'app'), { recursive: true })
  await mkdir(join(up, 'usr/share/doc'), { recursive: true })
  await mkdir(join(up, 'etc'), { recursive: true })
  await writeFile(join(up, 'app/hello.py'), 'print("hello from the app layer")\n')
  await writeFile(join(up, 'usr/share/doc/README'), 'docs were replaced\n')
  await writeFile(join(up, 'usr/share/doc/.wh..wh..opq'), '')
  await writeFile(join(up, 'etc/.wh.debian_version'), '')
  const upperTar = join(dir, 'upper.tar')
  execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '--mtime=@1700000000', '-C', up, '-cf', upperTar, 'app', 'usr', 'etc'])

  const { ref } = await pushEstargz(dir, reg.host, 'py/app', [base, upperTar])

  // Expected tree: extract in order; whiteouts delete, opaque dirs are emptied first.
  const want = join(dir, 'want')
  await mkdir(want)
  execFileSync('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', want, '-xpf', base])
  await rm(join(want, 'etc/debian_version'), { force: true })
  await rm(join(want, 'usr/share/doc'), { recursive: true, force: true })
  execFileSync('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '--exclude=.wh.*', '-C', want, '-xpf', upperTar])

  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const m = startMount([ref, mnt, '--state-dir', join(dir, 'state'), '--hosts-dir', join(dir, 'certs.d'), '--plain-http'])
  t.teardown(() => stop(m))
  await waitMounted(m)

  const py = await execFileP('chroot', [mnt, 'python3', '-c', 'print(1)'])
  t.equal(py.stdout, '1\n', 'python3 runs from the lazy mount')
  const app = await execFileP('chroot', [mnt, 'python3', '/app/hello.py'])
  t.equal(app.stdout, 'hello from the app layer\n')

  // The TOC carries whole-second mtimes (RFC 3339, as the reference writes them), so compare
  // seconds, rounded the way the writer rounds.
  const seconds = (tree: Awaited<ReturnType<typeof snapshotTree>>): typeof tree => {
    for (const v of Object.values(tree)) v.mtimeNs = String((BigInt(v.mtimeNs) + 500_000_000n) / 1_000_000_000n)
    return tree
  }
  const got = seconds(await snapshotTree(mnt, ['.']))
  const expected = seconds(await snapshotTree(want, ['.']))
  const gotKeys = Object.keys(got).sort()
  const wantKeys = Object.keys(expected).sort()
  t.same(gotKeys.filter((k) => !(k in expected)), [], 'no extra paths in the mount')
  t.same(wantKeys.filter((k) => !(k in got)), [], 'no missing paths in the mount')
  let mismatches = 0
  for (const k of wantKeys) {
    if (JSON.stringify(got[k]) !== JSON.stringify(expected[k])) {
      if (mismatches++ < 10) t.same(got[k], expected[k], `${k} matches`)
    }
  }
  t.equal(mismatches, 0, `${wantKeys.length} paths compared (names, types, modes, owners, sizes, mtimes, links, xattrs, bytes)`)
  t.ok(wantKeys.length > 5000, `a real rootfs (${wantKeys.length} paths)`)
  t.equal(await stop(m), 0, 'SIGTERM exits 0')
  t.same(await mountsUnder(dir), [], 'nothing left mounted')
})

/** A TCP forwarder that can play dead (refuse and reset) and come back on the same port. */
async function switchableForwarder(upstreamPort: number): Promise<{ port: number; down(): void; up(): void; close(): Promise<void> }> {
  let alive = true
  const open = new Set<Socket>()
  const server: Server = createServer((c) => {
    if (!alive) { c.destroy(); return }
    const u = connect(upstreamPort, '127.0.0.1')
    open.add(c); open.add(u)
    c.pipe(u); u.pipe(c)
    const end = (): void => { c.destroy(); u.destroy(); open.delete(c); open.delete(u) }
    c.on('error', end); u.on('error', end); c.on('close', end); u.on('close', end)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as { port: number }).port
  return {
    port,
    down: () => { alive = false; for (const s of open) s.destroy(); open.clear() },
    up: () => { alive = true },
    close: () => new Promise<void>((r) => { for (const s of open) s.destroy(); server.close(() => r()) }),
  }
}

t.test('registry dies mid-read: EIO in bounded time, reads work again when it is back', async (t) => {
  const dir = await tempDir(t, 'stargz-dies-')
  t.teardown(async () => { await unmountUnder(dir) })
  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const src = join(dir, 'src')
  await mkdir(join(src, 'data'), { recursive: true })
  const files = Array.from({ length: 6 }, (_, i) => ({ name: `data/f${i}.bin`, data: randomBytes(3 << 20) }))
  for (const f of files) await writeFile(join(src, f.name), f.data)
  const tar = join(dir, 'layer.tar')
  execFileSync('tar', ['-C', src, '-cf', tar, 'data'])
  const { ref } = await pushEstargz(dir, reg.host, 'dies/app', [tar])
  const fwd = await switchableForwarder(Number(reg.host.split(':')[1]))
  t.teardown(() => fwd.close())
  const viaFwd = ref.replace(reg.host, `127.0.0.1:${fwd.port}`)

  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const m = startMount([viaFwd, mnt, '--state-dir', join(dir, 'state'), '--hosts-dir', join(dir, 'certs.d'), '--plain-http', '--no-background-fetch', '--no-prefetch'])
  t.teardown(() => stop(m))
  await waitMounted(m)

  const f0 = await execFileP('sha256sum', [join(mnt, files[0]!.name)])
  t.equal(f0.stdout.split(' ')[0], sha256(files[0]!.data).replace('sha256:', ''), 'a read while the registry is up')

  fwd.down()
  const started = Date.now()
  const dead = await execFileP('cat', [join(mnt, files[1]!.name)], { maxBuffer: 64 << 20, timeout: 600_000 }).then(() => 'ok', (e: { stderr?: string }) => e.stderr ?? 'error')
  t.match(dead, /Input\/output error/, 'EIO while the registry is down, never wrong bytes')
  t.ok(Date.now() - started < 600_000, `failed in bounded time (${((Date.now() - started) / 1000).toFixed(1)} s)`)

  fwd.up()
  const back = await execFileP('sha256sum', [join(mnt, files[1]!.name)])
  t.equal(back.stdout.split(' ')[0], sha256(files[1]!.data).replace('sha256:', ''), 'the same file reads correctly once the registry is back')
  t.match(m.log(), /read-failed|chunk-read-failed/, 'the failure was logged')
  t.equal(await stop(m), 0, 'SIGTERM exits 0')
})
