/**
 * Issue #11, the FUSE-serving side: two running containers read every file of their lazy layers
 * (5,000 files of an image converted by `stargz convert`, spread over ~25 s; 1,000 files of one
 * converted by `ctr-remote image convert`), while stargz-fused — the process serving FUSE — is
 * killed with -9 and started again, then handed off the upgrade way (SIGUSR2, exit 75) and
 * started again. The fd holder keeps each /dev/fuse connection open meanwhile; the new
 * stargz-fused adopts it, asks the kernel to resend what the dead one had read, and serves:
 * reads block, then succeed — not one fails, every byte is right, and afterwards nothing is left
 * (mounts, stargz-fused, holder). Background fetch and prefetch are off, so reads stay cold.
 */
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { startContainerd, mountsUnder } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { buildImage, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { convertFile } from '../../harness/convert.js'
import { REPO } from '../../harness/cli.js'
import { fusedPid, holderPid, processAlive, startFused, stopFused, waitGone } from '../../harness/fused.js'
import { listMounts } from '../../src/mounts/mount-table.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'
import { ctrOrThrow, daemonScratch, type StargzdProcess } from '../../harness/stargzd.js'

t.setTimeout(900_000)

const FILES = 5000
const FILES2 = 1000

t.test('containers keep reading while stargz-fused is killed -9 and upgraded', async (t) => {
  const { dir, root, sock, start: startDaemon } = await daemonScratch(t, 'sgd-fk-')
  t.teardown(() => stopFused(root))
  // Keep stargz-fused's log for a post-mortem (the scratch dir goes with the test).
  t.teardown(() => copyFile(join(root, 'fused.sock.log'), join(tmpdir(), 'fused-kill.last.log')).catch(() => undefined))
  const registry = await startRegistry()
  t.teardown(() => registry.close())

  const baseTar = execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim()
  const expected = new Map<string, string>()
  const put = async (base: string, rel: string, size: number): Promise<void> => {
    const body = randomBytes(size)
    expected.set(`/${rel}`, createHash('md5').update(body).digest('hex'))
    await writeFile(join(base, rel), body)
  }
  // Image 1: busybox + /data/f/NNNN, converted by our writer (`stargz convert`'s code).
  const rootfs1 = join(dir, 'rootfs1.tar')
  await copyFile(baseTar, rootfs1)
  await mkdir(join(dir, 'x1', 'data', 'f'), { recursive: true })
  for (let i = 0; i < FILES; i++) await put(join(dir, 'x1'), `data/f/${String(i).padStart(4, '0')}`, 64 + (i * 37) % 3000)
  execFileSync('tar', ['-rf', rootfs1, '-C', join(dir, 'x1'), 'data'])
  const conv = await convertFile(rootfs1, join(dir, 'img1.estargz'))
  const image1 = buildImage({ layers: [{ data: await readFile(join(dir, 'img1.estargz')), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } }] })
  await writeOciLayout(join(dir, 'oci1'), 'v1', [image1])
  const ref1 = `${registry.host}/fk/ours:v1`
  await skopeoPush(join(dir, 'oci1'), 'v1', ref1)

  // Image 2: busybox + /data/g/NNNN as plain gzip, converted by ctr-remote inside containerd.
  const rootfs2 = join(dir, 'rootfs2.tar')
  await copyFile(baseTar, rootfs2)
  await mkdir(join(dir, 'x2', 'data', 'g'), { recursive: true })
  for (let i = 0; i < FILES2; i++) await put(join(dir, 'x2'), `data/g/${String(i).padStart(4, '0')}`, 100 + (i * 53) % 5000)
  execFileSync('tar', ['-rf', rootfs2, '-C', join(dir, 'x2'), 'data'])
  const gz = execFileSync('gzip', ['-c', '-n', rootfs2], { maxBuffer: 1 << 30 })
  const diff2 = `sha256:${createHash('sha256').update(await readFile(rootfs2)).digest('hex')}`
  await writeOciLayout(join(dir, 'oci2'), 'v1', [buildImage({ layers: [{ data: gz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: diff2 }] })])
  const plain2 = `${registry.host}/fk/plain:v1`
  const ref2 = `${registry.host}/fk/theirs:esgz`
  await skopeoPush(join(dir, 'oci2'), 'v1', plain2)

  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'no_background_fetch = true\nnoprefetch = true\n')
  const argv = ['--root', root, '--address', sock, '--config', cfg, '--fuse-manager', 'default', '--hosts-dir', join(dir, 'certs.d')]
  const sgd: StargzdProcess = await startDaemon(argv.slice(4))
  const fused1 = await fusedPid(root)
  t.ok(fused1, 'stargzd started a stargz-fused')
  const holder = await holderPid(root)
  t.ok(holder, 'stargz-fused started an fd holder')
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const ctr = ctrOrThrow(ctrd, () => sgd.raw.join('\n'))
  await ctr(['image', 'pull', '--plain-http', plain2])
  const cv = await ctrd.ctrRemote(['image', 'convert', '--oci', '--estargz', plain2, ref2])
  t.equal(cv.code, 0, `ctr-remote image convert: ${cv.stderr}`)
  await ctr(['image', 'push', '--plain-http', ref2])
  await ctr(['image', 'rm', plain2, ref2])
  for (const ref of [ref1, ref2]) {
    const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', ref])
    t.equal(rp.code, 0, `rpull ${ref}: ${rp.stderr}`)
  }
  t.equal((await listMounts()).filter((m) => m.mountpoint.startsWith(root) && m.fsType === 'fuse.stargz').length, 2, 'both layers mounted')
  // fuse-native mounts show as fuse.stargz too: the backend is in stargz-fused's log.
  const mountedBy = (await readFile(join(root, 'fused.sock.log'), 'utf8')).split('\n').filter((l) => l.includes('"layer-mounted"'))
  t.ok(mountedBy.length === 2 && mountedBy.every((l) => l.includes('"backend":"proto"')), 'both served by our protocol code')

  const [ctrBin, ctrGlobal] = ctrd.ctrArgv()
  const run = (ref: string, name: string, script: string) => {
    const child = spawn(ctrBin, [...ctrGlobal, 'run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(), ref, name, '/bin/busybox', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] })
    const lines: string[] = []
    const errs: string[] = []
    createInterface({ input: child.stdout }).on('line', (l) => lines.push(l))
    createInterface({ input: child.stderr }).on('line', (l) => errs.push(l))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
    t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
    return { child, lines, errs, exited }
  }
  const c1 = run(ref1, 'reader1', 'for f in /data/f/*; do md5sum "$f" || echo "FAIL $f"; usleep 5000; done; echo DONE')
  const c2 = run(ref2, 'reader2', 'for f in /data/g/*; do md5sum "$f" || echo "FAIL $f"; usleep 20000; done; echo DONE')
  const reads = (c: { lines: string[] }): number => c.lines.filter((l) => l.includes('/data/')).length
  const until = async (pred: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 300_000
    while (!pred()) {
      if (c1.child.exitCode !== null && c2.child.exitCode !== null) throw new Error(`containers exited before ${what}: ${c1.errs.join('\n')} ${c2.errs.join('\n')}`)
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await sleep(100)
    }
  }

  // 1. kill -9 of stargz-fused mid-pass; a second later a new one (what Restart= does).
  await until(() => reads(c1) >= 500, '500 reads')
  process.kill(fused1 as number, 'SIGKILL')
  await waitGone(fused1 as number)
  const atKill = reads(c1)
  await sleep(1000)
  const duringGap = reads(c1)
  const fused2 = await startFused(root, argv)
  await until(() => reads(c1) >= atKill + 1000, 'reads after the kill -9')

  // 2. Upgrade-style: SIGUSR2 hands off (layers stay mounted and held, exit 75), a new build starts.
  process.kill(fused2, 'SIGUSR2')
  await waitGone(fused2)
  const atHandoff = reads(c1)
  const fused3 = await startFused(root, argv)
  await until(() => c1.lines.includes('DONE') && c2.lines.includes('DONE'), 'both passes')

  t.equal(await c1.exited, 0, `container 1 exited 0: ${c1.errs.slice(-5).join('\n')}`)
  t.equal(await c2.exited, 0, `container 2 exited 0: ${c2.errs.slice(-5).join('\n')}`)
  for (const [c, n, name] of [[c1, FILES, 'stargz convert'], [c2, FILES2, 'ctr-remote']] as const) {
    const got = c.lines.filter((l) => l.includes('/data/'))
    t.same(got.filter((l) => l.startsWith('FAIL')), [], `no failed read (${name} image)`)
    t.equal(got.length, n, `all ${n} files read (${name} image)`)
    t.same(got.filter((l) => { const [h, f] = l.split(/\s+/); return expected.get(f as string) !== h }), [], `every read right (${name} image)`)
  }
  t.ok(atKill < FILES && atHandoff < FILES, `kill and hand-off happened mid-pass (after ${atKill} and ${atHandoff} of ${FILES} reads)`)
  t.ok(duringGap <= atKill + 1, `reads waited while no stargz-fused ran (${atKill} → ${duringGap})`)
  const log = await readFile(join(root, 'fused.sock.log'), 'utf8')
  t.ok((log.match(/fuse-connection-adopted/g) ?? []).length >= 4, 'each restart adopted both connections')
  t.equal(await holderPid(root), holder, 'one fd holder the whole time')

  await ctr(['image', 'rm', ref1, ref2])
  await sgd.close()
  await stopFused(root)
  t.notOk(processAlive(fused3), 'stargz-fused stopped')
  t.notOk(processAlive(holder as number), 'fd holder stopped')
  t.same(await mountsUnder(root), [], 'no mounts left')
})
