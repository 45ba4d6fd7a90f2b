/**
 * Issue #11 must-show: a restart with the registry stopped (every request answered 503), 20 lazy
 * layers. Real containerd + runc + docker-registry; prefetch and background fetch off, so only
 * files a container read are cached.
 *   - --fuse-manager: a running container read one "warm" file of every layer; stargzd is killed
 *     -9 and started with the registry down: it is ready (time reported, not asserted), every layer
 *     is restored, the container re-reads its warm files; with the registry back, it reads the
 *     "cold" files it never read, with no restart.
 *   - in-process (default): the same image; kill -9 with the registry down: the new stargzd mounts
 *     all 20 layers again from its persisted layer records (no registry), a new container reads the
 *     cached files, and once the registry is back, the cold files — no restart.
 * Coordination with containers by flag files in a bind-mounted dir, not by sleeps.
 */
import t, { type Test } from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile, copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { startContainerd, mountsUnder, type Containerd } from '../../harness/containerd.js'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy, type FaultProxy } from '../../harness/fault-proxy.js'
import { buildImage, skopeoPush, writeOciLayout } from '../../harness/image.js'
import { convertFile } from '../../harness/convert.js'
import { REPO } from '../../harness/cli.js'
import { stopFused } from '../../harness/fused.js'
import { TOC_DIGEST_ANNOTATION } from '../../src/estargz/types.js'
import { ctrOrThrow, daemonScratch, type StargzdProcess } from '../../harness/stargzd.js'

t.setTimeout(900_000)

const LAYERS = 20
const expected = new Map<string, string>()

const registry = await startRegistry()
t.teardown(() => registry.close())
const proxy: FaultProxy = await startFaultProxy(registry.url)
t.teardown(() => proxy.close())
const registryDown = (): void => { proxy.faults.statusBurst = { status: 503, count: 1_000_000 } }
const registryUp = (): void => { proxy.faults.statusBurst = undefined }

// Layer 0: busybox; layers 1..19: /lNN/warm (read before the restart) and /lNN/cold (after it).
const build = await (async () => {
  const { dir } = { dir: execFileSync('mktemp', ['-d', '/tmp/sgd-regstop-img-XXXXXX'], { encoding: 'utf8' }).trim() }
  t.teardown(() => execFileSync('rm', ['-rf', dir]))
  const layers = []
  for (let i = 0; i < LAYERS; i++) {
    const tar = join(dir, `l${i}.tar`)
    if (i === 0) {
      await copyFile(execFileSync('bash', [join(REPO, 'scripts/fixtures/busybox-rootfs.sh')], { encoding: 'utf8' }).trim(), tar)
    } else {
      const d = join(dir, `l${i}`, `l${String(i).padStart(2, '0')}`)
      await mkdir(d, { recursive: true })
      for (const [name, size] of [['warm', 3000], ['cold', 200_000]] as const) {
        const body = randomBytes(size)
        expected.set(`/l${String(i).padStart(2, '0')}/${name}`, createHash('md5').update(body).digest('hex'))
        await writeFile(join(d, name), body)
      }
      execFileSync('tar', ['-cf', tar, '-C', join(dir, `l${i}`), '.'])
    }
    const conv = await convertFile(tar, join(dir, `l${i}.esgz`))
    layers.push({ data: await readFile(join(dir, `l${i}.esgz`)), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: conv.diffID, annotations: { [TOC_DIGEST_ANNOTATION]: conv.tocDigest } })
  }
  await writeOciLayout(join(dir, 'oci'), 'v1', [buildImage({ layers })])
  await skopeoPush(join(dir, 'oci'), 'v1', `${registry.host}/test/twenty:v1`)
  return { ref: `${proxy.host}/test/twenty:v1` }
})()

const READ = (what: 'warm' | 'cold'): string => `for f in /l*/${what}; do echo "${what.toUpperCase()} $(md5sum "$f" 2>&1 || echo "FAIL $f")"; done; echo ${what.toUpperCase()}-DONE`

/** md5 lines of `what` that are wrong or failed (empty: all right); `n` how many there were. */
function verdict(lines: string[], what: 'warm' | 'cold'): { n: number; bad: string[] } {
  const mine = lines.filter((l) => l.startsWith(`${what.toUpperCase()} `))
  const bad = mine.filter((l) => { const [, h, f] = l.split(/\s+/); return expected.get(f as string) !== h })
  return { n: mine.length, bad }
}

async function setup(t: Test, prefix: string, extra: string[]) {
  const s = await daemonScratch(t, prefix)
  t.teardown(() => stopFused(s.root))
  const cfg = join(s.dir, 'config.toml')
  await writeFile(cfg, 'no_background_fetch = true\nnoprefetch = true\n[blob]\nmax_retries = 1\nmin_wait_msec = 10\nmax_wait_msec = 50\n')
  const start = async (): Promise<{ p: StargzdProcess; readyMs: number }> => {
    const t0 = performance.now()
    const p = await s.start(['--config', cfg, '--hosts-dir', join(s.dir, 'certs.d'), ...extra])
    return { p, readyMs: Math.round(performance.now() - t0) }
  }
  const first = await start()
  const ctrd: Containerd = await startContainerd({ proxyPlugins: { stargz: { address: s.sock } } })
  t.teardown(() => ctrd.close())
  registryUp()
  const rp = await ctrd.ctrRemote(['image', 'rpull', '--plain-http', build.ref])
  t.equal(rp.code, 0, `rpull: ${rp.stderr}`)
  t.ok(await first.p.waitFor((l) => l.msg === 'remote-snapshot-prepared' && String(l.mountpoint ?? '').length > 0), 'layers mounted lazily')
  return { ...s, start, ctrd, first: first.p }
}

t.test('--fuse-manager: registry stopped, kill -9: ready with 20 layers, the running container keeps reading', async (t) => {
  const s = await setup(t, 'sgd-regstop-fused-', ['--fuse-manager', 'default'])
  let sgd = s.first
  const flags = join(s.dir, 'flags')
  await mkdir(flags)
  const script = [READ('warm'), 'while [ ! -e /flags/go2 ]; do usleep 100000; done', READ('warm'),
    'while [ ! -e /flags/go3 ]; do usleep 100000; done', READ('cold')].join('\n')
  const [ctrBin, ctrGlobal] = s.ctrd.ctrArgv()
  const child = spawn(ctrBin, [...ctrGlobal, 'run', '--rm', '--snapshotter', 'stargz', ...s.ctrd.runArgs(),
    '--mount', `type=bind,src=${flags},dst=/flags,options=rbind:ro`, build.ref, 'reader', '/bin/busybox', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  const errs: string[] = []
  let wake: (() => void) | undefined
  createInterface({ input: child.stdout }).on('line', (l) => { lines.push(l); wake?.() })
  createInterface({ input: child.stderr }).on('line', (l) => { errs.push(l); wake?.() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => { wake?.(); resolve(c) }))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  const until = async (what: string): Promise<void> => {
    const deadline = Date.now() + 300_000
    while (lines.filter((l) => l === what).length === 0) {
      if (child.exitCode !== null) throw new Error(`container exited before ${what}: ${errs.join('\n')}`)
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>((r) => { wake = r; setTimeout(r, 500) })
    }
  }
  await until('WARM-DONE')
  t.same(verdict(lines, 'warm'), { n: LAYERS - 1, bad: [] }, 'warm files read right before the restart')

  registryDown()
  await sgd.kill9()
  const r = await s.start()
  sgd = r.p
  t.comment(`restart with the registry down, ${LAYERS} lazy layers, --fuse-manager: spawn → ready ${r.readyMs} ms`)
  const rep = await sgd.waitFor((l) => l.msg === 'restored remote snapshots')
  t.equal(Number(rep.restored), LAYERS, `all ${LAYERS} layers restored with the registry down`)
  t.equal(Number(rep.failed), 0, 'none failed')
  lines.length = 0
  await writeFile(join(flags, 'go2'), '')
  await until('WARM-DONE')
  t.same(verdict(lines, 'warm'), { n: LAYERS - 1, bad: [] }, 'the running container re-read its cached files right, registry down')

  registryUp()
  await writeFile(join(flags, 'go3'), '')
  t.equal(await exited, 0, `container exited 0: ${errs.slice(-5).join('\n')}`)
  t.same(verdict(lines, 'cold'), { n: LAYERS - 1, bad: [] }, 'never-read files read right once the registry is back, no restart')
  await ctrOrThrow(s.ctrd)(['image', 'rm', build.ref])
  await sgd.close()
  await stopFused(s.root)
  t.same(await mountsUnder(s.root), [], 'no mounts left')
})

t.test('in-process: registry stopped, kill -9: all 20 layers back from the layer records, a new container reads', async (t) => {
  const s = await setup(t, 'sgd-regstop-inproc-', [])
  const ctr = ctrOrThrow(s.ctrd)
  // containerd redials a proxy snapshotter that went away with a backoff: retry while it does.
  const run = async (args: string[]): Promise<string> => {
    for (let i = 0; ; i++) {
      const r = await s.ctrd.ctr(args)
      if (r.code === 0) return r.stdout
      if (i >= 30 || !/connection refused|unavailable/i.test(r.stderr)) throw new Error(`ctr ${args.join(' ')}: ${r.stderr.slice(0, 2000)}`)
      await sleep(1000)
    }
  }
  const warm1 = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...s.ctrd.runArgs(), build.ref, 'warm1', '/bin/busybox', 'sh', '-c', READ('warm')])
  t.same(verdict(warm1.split('\n'), 'warm'), { n: LAYERS - 1, bad: [] }, 'warm files read right before the restart')

  registryDown()
  proxy.clearLog()
  await s.first.kill9()
  const r = await s.start()
  t.comment(`restart with the registry down, ${LAYERS} lazy layers, in-process: spawn → ready ${r.readyMs} ms`)
  const rep = await r.p.waitFor((l) => l.msg === 'restored remote snapshots')
  t.equal(Number(rep.restored), LAYERS, `all ${LAYERS} layers re-mounted with the registry down`)
  t.equal(Number(rep.failed), 0, 'none failed')
  t.equal(proxy.log.filter((l) => l.path.includes('/blobs/')).length, 0, 'restore sent no blob request')
  const warm2 = await run(['run', '--rm', '--snapshotter', 'stargz', ...s.ctrd.runArgs(), build.ref, 'warm2', '/bin/busybox', 'sh', '-c', READ('warm')])
  t.same(verdict(warm2.split('\n'), 'warm'), { n: LAYERS - 1, bad: [] }, 'a new container reads the cached files right, registry down')

  registryUp()
  const cold = await ctr(['run', '--rm', '--snapshotter', 'stargz', ...s.ctrd.runArgs(), build.ref, 'cold', '/bin/busybox', 'sh', '-c', READ('cold')])
  t.same(verdict(cold.split('\n'), 'cold'), { n: LAYERS - 1, bad: [] }, 'never-read files read right once the registry is back, no restart')
  await ctr(['image', 'rm', build.ref])
  await r.p.close()
  t.same(await mountsUnder(s.root), [], 'no mounts left')
})
