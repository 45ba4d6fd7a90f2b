/**
 * Our `stargz convert --zstdchunked` output read by the reference itself: the stargz-snapshotter
 * 0.12 daemon (../shared/reference/build.sh, Debian's library) under real containerd, via
 * `ctr-remote image rpull`. The reference must mount the layer lazily (it logs
 * remote-snapshot-prepared; a FUSE mount appears under its root) and the container must run.
 */
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startContainerd, mountsUnder, unmountUnder } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, sha256, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { REPO, runStargz } from '../../harness/cli.js'

t.setTimeout(600_000)

const BUILD = join(REPO, '../shared/reference/build.sh')
const SHARED_BUILD = '/work/shared/reference/build.sh'

function referenceBinary(): string | undefined {
  for (const b of [BUILD, SHARED_BUILD]) {
    if (!existsSync(b)) continue
    try { return execFileSync('bash', [b], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 600_000 }).trim() } catch { return undefined }
  }
  return undefined
}

const bin = referenceBinary()

t.test('the reference snapshotter lazily mounts and runs our zstd:chunked image', { skip: bin ? false : 'reference daemon not buildable here (../shared/reference/build.sh)' }, async (t) => {
  if (!bin) return
  // Unix socket paths are short: keep the reference's root in a short temp dir.
  const dir = await mkdtemp('/tmp/zref-')
  t.teardown(async () => { await unmountUnder(dir); await rm(dir, { recursive: true, force: true }) })
  const reg = await startRegistry()
  t.teardown(() => reg.close())

  const rootfs = execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim()
  const tar = await readFile(rootfs)
  const gz = execFileSync('gzip', ['-n', '-c', rootfs], { maxBuffer: 64 << 20 })
  await writeOciLayout(join(dir, 'src'), 'v1', [buildImage({ layers: [{ data: gz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar) }] })])
  await skopeoPush(join(dir, 'src'), 'v1', `${reg.host}/zr/busybox:v1`)
  const ref = `${reg.host}/zr/busybox:zstd`
  const conv = await runStargz(['convert', `${reg.host}/zr/busybox:v1`, ref, '--zstdchunked', '--plain-http', '--cache-dir', join(dir, 'cache')], { timeoutMs: 300_000 })
  t.equal(conv.code, 0, `stargz convert --zstdchunked: ${conv.stderr}`)

  const cfg = join(dir, 'ref.toml')
  await writeFile(cfg, `noprefetch = true\nno_background_fetch = true\n[[resolver.host."${reg.host}".mirrors]]\nhost = "${reg.host}"\ninsecure = true\n`)
  const sock = join(dir, 'ref.sock')
  const root = join(dir, 'root')
  const child = spawn(bin, ['-address', sock, '-root', root, '-config', cfg, '-log-level', 'debug'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  child.stderr.on('data', (b: Buffer) => { log += b.toString() })
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGINT')
      await Promise.race([exited, sleep(10_000)])
      if (child.exitCode === null) child.kill('SIGKILL')
    }
    await unmountUnder(root)
  })
  for (let i = 0; i < 200 && !existsSync(sock); i++) await sleep(50)
  t.ok(existsSync(sock), 'reference daemon is listening')

  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', ref])
  t.equal(rp.code, 0, `ctr-remote image rpull through the reference: ${rp.stderr}`)
  t.match(log, /remote-snapshot-prepared/, 'the reference prepared a remote (lazy) snapshot', { log: log.split('\n').filter((l) => /error|warn|fallback/i.test(l)).slice(0, 20) })
  t.ok((await mountsUnder(root)).length > 0, 'a FUSE layer mount exists under the reference root')
  const run = await ctrd.ctr(['run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, 'zref1', '/bin/busybox', 'echo', 'hello via the reference'])
  t.match(run.stdout, /hello via the reference/, `container runs from the reference's lazy mount: ${run.stderr}`)
})
