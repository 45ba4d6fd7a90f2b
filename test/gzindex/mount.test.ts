import t from 'tap'
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, readFile, readdir, lstat } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { promisify } from 'node:util'
import { REPO, runStargz } from '../../harness/cli.js'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, sha256 } from '../../harness/image.js'
import { tempDir } from '../../harness/tree.js'
import { unmountUnder } from '../../harness/containerd.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { decodeIndex, encodeIndex } from '../../src/gzindex/format.js'
import { indexTag, pushIndex } from '../../src/gzindex/artifact.js'

// `stargz mount` of plain gzip images (never converted) through their gzip index, over the same
// FUSE path as eStargz: python3 runs from the lazy mount, every file equals `tar -x`; a forged
// index is refused at mount or gives EIO, never wrong bytes.
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
async function waitMounted(r: Running): Promise<boolean> {
  for (;;) {
    if (r.log().includes('"msg":"mounted"')) return true
    if (r.child.exitCode !== null) return false
    await new Promise((res) => setTimeout(res, 100))
  }
}
async function stop(r: Running): Promise<number | null> {
  if (r.child.exitCode === null) r.child.kill('SIGTERM')
  return r.exited
}
async function* walk(dir: string): AsyncGenerator<string> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) yield* walk(p)
    else yield p
  }
}

const dir = await tempDir(t)
t.teardown(async () => { await unmountUnder(dir) })
const reg = await startRegistry()
t.teardown(() => reg.close())
const client = new RegistryClient({ plainHttp: true, hostsDir: join(dir, 'certs.d'), credentials: new StaticCredentials({}) })
t.teardown(() => client.close())
const common = ['--hosts-dir', join(dir, 'certs.d'), '--plain-http']

async function pushPlain(tarPath: string, repo: string): Promise<{ ref: string; gz: Buffer }> {
  const gzPath = join(dir, `${repo}.tar.gz`)
  execFileSync('sh', ['-c', `gzip -6 -c '${tarPath}' > '${gzPath}'`])
  const gz = await readFile(gzPath)
  const img = buildImage({ layers: [{ data: gz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(await readFile(tarPath)) }] })
  const ref = `${reg.host}/gz/${repo}:latest`
  await client.pushImage(ref, img.config, img.layers)
  return { ref, gz }
}

t.test('python3 plain gzip + index: mounts lazily, runs, every file equals tar -x', async (t) => {
  const tarPath = execFileSync('bash', [join(REPO, 'scripts/fixtures/python-rootfs.sh')], { encoding: 'utf8' }).trim()
  const { ref, gz } = await pushPlain(tarPath, 'python')
  const ix = await runStargz(['index', ref, ...common], { timeoutMs: 600_000 })
  t.equal(ix.code, 0, ix.stderr)
  const mnt = join(dir, 'mnt-py')
  await mkdir(mnt)
  const m = startMount([ref, mnt, '--state-dir', join(dir, 'state-py'), '--no-background-fetch', ...common])
  t.teardown(() => stop(m))
  t.ok(await waitMounted(m), m.log())
  t.match(m.log(), /gzindex-layer/, 'the layer is served through its index')
  t.notMatch(m.log(), /layer-full-fetch/, 'no full fetch')
  const py = await execFileP('chroot', [mnt, 'python3', '-c', 'print("hello")'])
  t.equal(py.stdout, 'hello\n', 'python3 runs from the lazy mount')
  const want = join(dir, 'want-py')
  await mkdir(want)
  execFileSync('tar', ['--numeric-owner', '-C', want, '-xpf', tarPath])
  let files = 0
  let bad = 0
  for await (const p of walk(want)) {
    const st = await lstat(p)
    if (!st.isFile()) continue
    const rel = relative(want, p)
    const got = await readFile(join(mnt, rel)).catch(() => undefined)
    const exp = await readFile(p)
    if (!got || !got.equals(exp)) { bad++; if (bad < 5) t.fail(`${rel} differs`) }
    files++
  }
  t.equal(bad, 0, `${files} files byte-exact through the FUSE mount`)
  t.ok(gz.length > 0)
  t.equal(await stop(m), 0)
})

t.test('forged index: refused at mount, or EIO on read', async (t) => {
  const tarPath = execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim()
  const { ref, gz } = await pushPlain(tarPath, 'busybox')
  const ix = await runStargz(['index', ref, '--spacing', '1', ...common])
  t.equal(ix.code, 0, ix.stderr)
  const layer = { digest: sha256(gz), size: gz.length, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }
  const tag = indexTag(layer.digest)
  const m0 = await client.fetchManifest(`${reg.host}/gz/busybox:${tag}`)
  const blobDesc = (JSON.parse(m0.bytes.toString()) as { layers: Array<{ digest: string; size: number }> }).layers[0]!
  const honest = decodeIndex(await client.fetchBlob(ref, blobDesc.digest, blobDesc.size), layer)
  // 1. Index for another layer size: decode refuses, the mount is refused.
  const wrongLayer = encodeIndex({ ...honest, layer: { digest: layer.digest, size: layer.size + 1 } }, honest.spans.map((_, i) => honest.window(i)))
  await pushIndex(client, { ...(await client.resolve(ref)).reference }, layer, wrongLayer)
  const mntA = join(dir, 'mnt-a')
  await mkdir(mntA)
  const a = startMount([ref, mntA, '--state-dir', join(dir, 'state-a'), '--no-background-fetch', ...common])
  t.teardown(() => stop(a))
  t.notOk(await waitMounted(a), 'mount refused')
  t.not(await a.exited, 0)
  // 2. A span's window corrupted (checksums recomputed, as a forger would): EIO on read.
  const spans = structuredClone(honest.spans)
  const windows = honest.spans.map((_, i) => Buffer.from(honest.window(i)))
  for (const w of windows) w.fill(0x41)
  const forged = encodeIndex({ ...honest, spans }, windows)
  await pushIndex(client, { ...(await client.resolve(ref)).reference }, layer, forged)
  const mntB = join(dir, 'mnt-b')
  await mkdir(mntB)
  const b = startMount([ref, mntB, '--state-dir', join(dir, 'state-b'), '--no-background-fetch', ...common])
  t.teardown(() => stop(b))
  t.ok(await waitMounted(b), b.log())
  const r = await execFileP('cat', [join(mntB, 'bin/busybox')], { encoding: 'buffer', maxBuffer: 1 << 26 }).then((x) => ({ ok: true, out: x.stdout as Buffer, err: '' }), (e: { stderr?: Buffer }) => ({ ok: false, out: Buffer.alloc(0), err: String(e.stderr) }))
  const want = createHash('sha256').update(execFileSync('tar', ['-xOf', tarPath, './bin/busybox'], { maxBuffer: 1 << 26 })).digest('hex')
  t.ok(honest.spans.some((s) => s.windowLen > 0), 'some span has a window to forge')
  t.notOk(r.ok, 'the read fails')
  if (r.ok) t.equal(createHash('sha256').update(r.out).digest('hex'), want, 'and were it served, the bytes would be right')
  else t.match(r.err, /Input\/output error/, 'EIO')
  t.equal(await stop(b), 0)
})
