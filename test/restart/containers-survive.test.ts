/**
 * Issue #11, the must-show case: a running container reads every file of a 5,000-file lazy layer,
 * spread over ~25 s, while stargzd is killed with -9 and started again, then SIGTERM'd and started
 * again. FUSE is served by stargz-fused (--fuse-manager), which outlives the daemon, so every read
 * succeeds, cold ones included (background fetch and prefetch off: reads stay cold). Then, with
 * the registry down (every request answered 503), stargzd restarts, re-attaches without the
 * registry, the container re-reads its cached files; files never read before are read once the
 * registry is back.
 *
 * Coordination with the container is by flag files in a bind-mounted host dir, not by sleeps.
 */
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { startContainerd, mountsUnder } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy } from '../../harness/fault-proxy.js'
import { buildImage, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { convertFile } from '../../harness/convert.js'
import { REPO } from '../../harness/cli.js'
import { fusedPid, stopFused } from '../../harness/fused.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'
import { ctrOrThrow, daemonScratch, type StargzdProcess } from '../../harness/stargzd.js'

t.setTimeout(900_000)

const FILES = 5000
const LATE = 50

t.test('containers keep reading across kill -9, SIGTERM and a registry outage', async (t) => {
  const { dir, root, start: startDaemon, sock } = await daemonScratch(t, 'sgd-rst-')
  t.teardown(() => stopFused(root))

  const registry = await startRegistry()
  t.teardown(() => registry.close())
  const proxy = await startFaultProxy(registry.url)
  t.teardown(() => proxy.close())

  // busybox + /data/f/NNNN (5,000 small files) + /data/late/NNNN (read only at the very end).
  const baseTar = execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim()
  const rootfsTar = join(dir, 'rootfs.tar')
  await copyFile(baseTar, rootfsTar)
  const expected = new Map<string, string>()
  await mkdir(join(dir, 'extra', 'data', 'f'), { recursive: true })
  await mkdir(join(dir, 'extra', 'data', 'late'), { recursive: true })
  const put = async (rel: string, size: number): Promise<void> => {
    const body = randomBytes(size)
    expected.set(`/${rel}`, createHash('md5').update(body).digest('hex'))
    await writeFile(join(dir, 'extra', rel), body)
  }
  for (let i = 0; i < FILES; i++) await put(`data/f/${String(i).padStart(4, '0')}`, 64 + (i * 37) % 3000)
  for (let i = 0; i < LATE; i++) await put(`data/late/${String(i).padStart(4, '0')}`, 100_000)
  execFileSync('tar', ['-rf', rootfsTar, '-C', join(dir, 'extra'), 'data'])
  const esgzPath = join(dir, 'img.estargz')
  const conv = await convertFile(rootfsTar, esgzPath)
  const esgz = await readFile(esgzPath)
  const image = buildImage({ layers: [{ data: esgz, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } }] })
  await writeOciLayout(join(dir, 'oci'), 'v1', [image])
  await skopeoPush(join(dir, 'oci'), 'v1', `${registry.host}/test/many:v1`)

  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'no_background_fetch = true\nnoprefetch = true\n[blob]\nmax_retries = 1\nmin_wait_msec = 10\nmax_wait_msec = 50\n')
  const start = (): Promise<StargzdProcess> => startDaemon(['--config', cfg, '--fuse-manager', 'default', '--hosts-dir', join(dir, 'certs.d')])
  let sgd = await start()
  const fused1 = await fusedPid(root)
  t.ok(fused1, 'stargzd started a stargz-fused')
  const ctrd = await startContainerd({ proxyPlugins: { stargz: { address: sock } } })
  t.teardown(() => ctrd.close())
  const ctr = ctrOrThrow(ctrd, () => sgd.raw.join('\n'))
  const ref = `${proxy.host}/test/many:v1`
  const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', ref])
  t.equal(rp.code, 0, `rpull: ${rp.stderr}`)

  // The container: pass 1 reads every /data/f file (≈5 ms apart), pass 2 re-reads them once
  // /flags/go2 exists, pass 3 reads /data/late once /flags/go3 exists.
  const flags = join(dir, 'flags')
  await mkdir(flags)
  const script = [
    'for f in /data/f/*; do md5sum "$f" || echo "FAIL $f"; usleep 5000; done; echo PASS1-DONE',
    'while [ ! -e /flags/go2 ]; do usleep 100000; done',
    'for f in /data/f/*; do echo "P2 $(md5sum "$f" || echo FAIL)"; done; echo PASS2-DONE',
    'while [ ! -e /flags/go3 ]; do usleep 100000; done',
    'for f in /data/late/*; do md5sum "$f" || echo "FAIL $f"; done; echo PASS3-DONE',
  ].join('\n')
  const [ctrBin, ctrGlobal] = ctrd.ctrArgv()
  const child = spawn(ctrBin, [...ctrGlobal, 'run', '--rm', '--snapshotter', 'stargz', ...ctrd.runArgs(),
    '--mount', `type=bind,src=${flags},dst=/flags,options=rbind:ro`, ref, 'reader', '/bin/busybox', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  const errs: string[] = []
  let wake: (() => void) | undefined
  createInterface({ input: child.stdout }).on('line', (l) => { lines.push(l); wake?.() })
  createInterface({ input: child.stderr }).on('line', (l) => { errs.push(l); wake?.() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => { wake?.(); resolve(c) }))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const until = async (pred: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 300_000
    while (!pred()) {
      if (child.exitCode !== null) throw new Error(`container exited before ${what}: ${errs.join('\n')}\n${lines.slice(-5).join('\n')}`)
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await Promise.race([new Promise<void>((r) => { wake = r }), sleep(500)])
    }
  }
  const pass1 = (): string[] => lines.filter((l) => l.includes('/data/f/') && !l.startsWith('P2'))

  // Reads have started: kill -9 the daemon, start it again.
  await until(() => pass1().length >= 200, '200 pass-1 reads')
  await sgd.kill9()
  const atKill = pass1().length
  sgd = await start()
  t.ok(sgd.logs.some((l) => l.msg === 'attached to stargz-fused' && l.started === false), 'restarted daemon attached to the running stargz-fused')
  t.ok(await sgd.waitFor((l) => l.msg === 'restored remote snapshots' && Number(l.restored) >= 1 && Number(l.failed) === 0), 'restore re-attached the lazy layer')
  await until(() => pass1().length >= atKill + 500, 'reads after the kill -9 restart')
  // SIGTERM this time: the daemon's orderly shutdown must leave the layer served too.
  const r1 = await sgd.close()
  t.equal(r1.code, 0, 'SIGTERM exits 0')
  t.ok((await mountsUnder(root)).length >= 1, 'the layer is still mounted after stargzd stopped')
  const atTerm = pass1().length
  sgd = await start()
  await until(() => pass1().length >= atTerm + 500, 'reads after the SIGTERM restart')
  await until(() => lines.includes('PASS1-DONE'), 'pass 1')
  const got1 = pass1().filter((l) => !l.startsWith('FAIL'))
  t.same(lines.filter((l) => l.startsWith('FAIL')), [], 'no failed read in pass 1')
  t.equal(got1.length, FILES, `all ${FILES} files read in pass 1`)
  const wrong1 = got1.filter((l) => { const [h, f] = l.split(/\s+/); return expected.get(f as string) !== h })
  t.same(wrong1, [], 'every pass-1 read returned the right bytes')
  t.ok(atKill < FILES && atTerm < FILES, `restarts happened mid-pass (after ${atKill} and ${atTerm} of ${FILES} reads)`)

  // Registry down: kill -9 + start; ready anyway, and cached files read fine.
  proxy.faults.statusBurst = { status: 503, count: 1_000_000 }
  await sgd.kill9()
  sgd = await start()
  t.ok(await sgd.waitFor((l) => l.msg === 'restored remote snapshots' && Number(l.restored) >= 1 && Number(l.failed) === 0), 'restore with the registry down re-attached the layer')
  await writeFile(join(flags, 'go2'), '')
  await until(() => lines.includes('PASS2-DONE'), 'pass 2')
  const p2 = lines.filter((l) => l.startsWith('P2 '))
  t.equal(p2.length, FILES, 'pass 2 read every file')
  t.same(p2.filter((l) => l.includes('FAIL') || expected.get(l.split(/\s+/)[2] as string) !== l.split(/\s+/)[1]), [], 'cached reads right with the registry down')

  // Registry back: never-read files come from it.
  proxy.faults.statusBurst = undefined
  await writeFile(join(flags, 'go3'), '')
  t.equal(await exited, 0, `container exited 0: ${errs.slice(-5).join('\n')}`)
  const p3 = lines.filter((l) => l.includes('/data/late/'))
  t.equal(p3.filter((l) => !l.startsWith('FAIL')).length, LATE, 'every late (uncached) file read once the registry is back')
  t.same(p3.filter((l) => l.startsWith('FAIL') || expected.get(l.split(/\s+/)[1] as string) !== l.split(/\s+/)[0]), [], 'late reads right')
  t.equal(await fusedPid(root), fused1, 'one stargz-fused served the whole time')

  await ctr(['image', 'rm', ref])
  await sgd.close()
  await stopFused(root)
  t.same(await mountsUnder(root), [], 'stopping stargz-fused left no mounts')
})
