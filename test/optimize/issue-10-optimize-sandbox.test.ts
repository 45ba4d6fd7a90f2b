/**
 * Issue #10 §5: `stargz optimize` ran an untrusted image's workload as root on the host (host
 * /dev rbound, all capabilities, host network), and a crafted WorkingDir made the host-side mkdir
 * follow a symlink out of the rootfs. It now runs under runc with a spec of our own. Each
 * finding has its own assertion here, against a hostile image:
 *   - WorkingDir "/escape/made-by-optimize" where /escape is a symlink to a host dir (absolute and
 *     relative ../ forms): nothing may appear on the host;
 *   - /etc/passwd a symlink to a host file that defines a user: --user must not find it;
 *   - the workload sees only loopback, a minimal /dev, the default capability set, no_new_privs.
 */
import t from 'tap'
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { RegistryClient } from '../../src/registry/client.js'
import { listMounts } from '../../src/fuse/unmount.js'
import { sha256 } from '../../harness/image.js'
import { memTar } from '../../harness/memtar.js'
import { startRegistry } from '../../harness/registry.js'
import { busyboxRootfs, gzipFileLayer, runCommand, tempDir } from '../../harness/convert-fixtures.js'

t.setTimeout(600_000)

// containerd's default capability set as /proc/PID/status prints it (CapEff).
const DEFAULT_CAPS_HEX = '00000000a80425fb'

t.test('optimize runs a hostile image in a runc sandbox', async (t) => {
  const dir = await tempDir(t, 'stargz-optimize-sandbox-')
  const hostTarget = join(dir, 'host-target')
  await mkdir(hostTarget)
  // A host file an image might point its /etc/passwd at.
  const hostPasswd = join(dir, 'host-passwd')
  await writeFile(hostPasswd, 'root:x:0:0::/root:/bin/sh\nhostonly:x:4242:4242::/:/bin/sh\n')

  const reg = await startRegistry()
  t.teardown(() => reg.close())
  const client = new RegistryClient({ plainHttp: true })
  t.teardown(() => client.close())
  const base = await gzipFileLayer(await busyboxRootfs())
  let images = 0
  const hostile = (workdir: string, extra: Parameters<typeof memTar>[0]): Promise<string> => {
    const tar = memTar([
      { name: 'escape', type: '2', linkname: hostTarget },
      { name: 'escape-rel', type: '2', linkname: '../../../../../../../../..' + hostTarget },
      ...extra,
    ])
    const top = { data: gzipSync(tar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256(tar) }
    const config = Buffer.from(JSON.stringify({
      architecture: 'amd64', os: 'linux',
      config: { Cmd: ['/bin/sh'], WorkingDir: workdir, Env: ['PATH=/bin'] },
      rootfs: { type: 'layers', diff_ids: [base.diffId, top.diffId] },
    }))
    const ref = `${reg.host}/hostile/image${++images}:1`
    return client.pushImage(ref, config, [base, top]).then(() => ref)
  }

  const probe = [
    'echo cwd=$(pwd)',
    'echo net=$(/bin/busybox tail -n +3 /proc/net/dev | /bin/busybox cut -d: -f1 | /bin/busybox tr -d " " | /bin/busybox tr "\\n" ,)',
    'echo dev=$(/bin/busybox ls /dev | /bin/busybox tr "\\n" ,)',
    '/bin/busybox grep -E "^(CapEff|NoNewPrivs):" /proc/self/status',
  ].join('; ')

  for (const wd of ['/escape/made-by-optimize', '/escape-rel/made-by-optimize']) {
    await t.test(`WorkingDir ${wd} through a symlink to the host creates nothing on the host`, async (t) => {
      const ref = await hostile(wd, [])
      const r = await runCommand('optimize', [ref, `${ref}-opt`, '--plain-http', '--cache-dir', join(dir, 'cache'),
        '--state-dir', join(dir, 'state'), '--period', '60', '--', '/bin/busybox', 'sh', '-c', 'echo started'])
      // Inside the container the symlink dangles, so runc (as under containerd) cannot make the
      // working directory and the workload does not start; the conversion still completes.
      t.equal(r.code, 0, 'optimize exits 0', { stderr: r.stderr })
      t.same(await readdir(hostTarget), [], 'nothing was created in the host directory the symlink names')
      t.notMatch(r.stderr, /started/, 'the workload did not run outside its rootfs')
      t.same((await listMounts()).filter((m) => m.mountpoint.startsWith(dir)), [], 'nothing left mounted')
    })
  }

  await t.test('the workload sees loopback only, a minimal /dev, default capabilities, no_new_privs', async (t) => {
    const ref = await hostile('/made/inside', [])
    const r = await runCommand('optimize', [ref, `${ref}-probe`, '--plain-http', '--cache-dir', join(dir, 'cache'),
      '--state-dir', join(dir, 'state-probe'), '--period', '60', '--', '/bin/busybox', 'sh', '-c', probe])
    t.equal(r.code, 0, 'optimize exits 0', { stderr: r.stderr })
    t.match(r.stderr, /cwd=\/made\/inside\n/, 'a missing WorkingDir is made inside the rootfs by runc')
    const net = /net=([^\n]*)/.exec(r.stderr)?.[1]?.split(',').filter((x) => x !== '')
    t.same(net, ['lo'], 'only loopback in the workload network namespace')
    const dev = /dev=([^\n]*)/.exec(r.stderr)?.[1]?.split(',').filter((x) => x !== '') ?? []
    const allowed = new Set(['console', 'core', 'fd', 'full', 'mqueue', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero'])
    t.same(dev.filter((d) => !allowed.has(d)), [], `a minimal /dev (${dev.join(' ')})`)
    t.ok(dev.includes('null') && dev.includes('urandom'), 'the default device nodes are there')
    t.notOk(dev.includes('fuse'), 'not the host /dev (no /dev/fuse)')
    t.match(r.stderr, new RegExp(`CapEff:\\s+${DEFAULT_CAPS_HEX}`), 'the default capability set, not all of them')
    t.match(r.stderr, /NoNewPrivs:\s+1/, 'no_new_privs')
    const host = await runCommand('optimize', [ref, `${ref}-nethost`, '--plain-http', '--cache-dir', join(dir, 'cache'),
      '--state-dir', join(dir, 'state-nethost'), '--net-host', '--', '/bin/busybox', 'sh', '-c', probe])
    t.equal(host.code, 0, '--net-host exits 0', { stderr: host.stderr })
    const hostNet = /net=([^\n]*)/.exec(host.stderr)?.[1]?.split(',').filter((x) => x !== '') ?? []
    const ours = (await readFile('/proc/net/dev', 'utf8')).split('\n').slice(2).map((l) => l.split(':')[0]?.trim()).filter((x) => x)
    t.same(hostNet.sort(), ours.sort(), '--net-host: the host interfaces')
  })

  await t.test('--user is looked up in the image, never through a symlink to the host', async (t) => {
    const ref = await hostile('/', [{ name: 'etc/', type: '5', mode: 0o755 }, { name: 'etc/passwd', type: '2', linkname: hostPasswd }])
    const r = await runCommand('optimize', [ref, `${ref}-user`, '--plain-http', '--cache-dir', join(dir, 'cache'),
      '--state-dir', join(dir, 'state-user'), '--user', 'hostonly', '--', '/bin/busybox', 'id'])
    t.not(r.code, 0, 'refused')
    t.match(r.stderr, /user "hostonly" is not in the image's \/etc\/passwd/)
    t.notMatch(r.stderr, /uid=4242/, 'the host file was not used')
  })

  await t.test('--mount, --env, --user resolved in the spec', async (t) => {
    const ref = await hostile('/', [])
    const share = join(dir, 'share')
    await mkdir(share)
    await writeFile(join(share, 'input.txt'), 'from the host\n')
    const r = await runCommand('optimize', [ref, `${ref}-mount`, '--plain-http', '--cache-dir', join(dir, 'cache'),
      '--state-dir', join(dir, 'state-mount'), '--mount', `${share}:/data:ro`, '--env', 'GREETING=hi', '--user', '65534',
      '--', '/bin/busybox', 'sh', '-c', 'cat /data/input.txt; echo $GREETING; /bin/busybox id -u; echo x > /data/w || echo read-only'])
    t.equal(r.code, 0, 'exits 0', { stderr: r.stderr })
    t.match(r.stderr, /from the host\nhi\n65534\n/, 'bind mount, env and user applied by runc')
    t.match(r.stderr, /read-only/, 'a :ro mount is read-only')
    t.same((await readdir(share)).sort(), ['input.txt'])
    t.equal(await readFile(join(share, 'input.txt'), 'utf8'), 'from the host\n')
  })
})
