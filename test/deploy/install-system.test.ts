/**
 * scripts/install-system.sh run twice against a scratch root (never this machine's /etc, /opt or
 * /usr): runtime dependencies only, wrappers that run, the unit, containerd's config merged once
 * with a backup of the old one, and systemctl (a recording shim on PATH) never asked to stop or
 * disable anything; containerd is try-restarted only by the run that changed its config.
 */
// stargzd-test: e2e
import t from 'tap'
import { execFile } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse } from 'smol-toml'
import { REPO } from '../../harness/cli.js'

const execFileP = promisify(execFile)
t.setTimeout(600_000)

const DEBIAN_CONFIG = `version = 2

# operator comment that must survive
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
`

t.test('install-system.sh twice: same files, containerd config merged once, nothing stopped', async (t) => {
  const T = await mkdtemp(join(tmpdir(), 'sgd-install-'))
  t.teardown(() => rm(T, { recursive: true, force: true }))
  const shims = join(T, 'shims')
  await mkdir(shims)
  const calls = join(T, 'calls.log')
  for (const tool of ['systemctl', 'apt-get', 'modprobe']) {
    await writeFile(join(shims, tool), `#!/bin/sh\necho "${tool} $*" >> ${JSON.stringify(calls)}\n${tool === 'apt-get' ? 'exit 1' : 'exit 0'}\n`)
    await chmod(join(shims, tool), 0o755)
  }
  const ctrdConfig = join(T, 'etc/containerd/config.toml')
  await mkdir(join(T, 'etc/containerd'), { recursive: true })
  await writeFile(ctrdConfig, DEBIAN_CONFIG)
  const prefix = join(T, 'opt/stargzd')
  const env = { ...process.env, PATH: `${shims}:${process.env.PATH ?? ''}`, STARGZD_ASSUME_SYSTEMD: '1' }
  const install = async (extra: string[]): Promise<{ stderr: string; calls: string[] }> => {
    await rm(calls, { force: true })
    const r = await execFileP('bash', [join(REPO, 'scripts/install-system.sh'), '--containerd', '--root', T, '--prefix', prefix, '--deps', 'copy', ...extra], { env, maxBuffer: 16 << 20 })
    const log = existsSync(calls) ? (await readFile(calls, 'utf8')).trim().split('\n') : []
    return { stderr: r.stderr, calls: log }
  }

  // First run builds dist/ (npm run build); the second uses it as it is.
  const first = await install([])
  const afterFirst = await readFile(ctrdConfig, 'utf8')
  const unit = await readFile(join(T, 'etc/systemd/system/stargzd.service'), 'utf8')
  const userEdit = '\n# operator edit, must be kept\n'
  await writeFile(join(T, 'etc/stargzd/config.toml'), (await readFile(join(T, 'etc/stargzd/config.toml'), 'utf8')) + userEdit)
  const second = await install(['--no-build'])
  const afterSecond = await readFile(ctrdConfig, 'utf8')

  // containerd's config: merged once, the operator's text kept, a backup of the old file.
  t.ok(afterFirst.startsWith(DEBIAN_CONFIG), 'the old config text (and its comment) is kept')
  const doc = parse(afterFirst) as { proxy_plugins: { stargz: Record<string, unknown> }; plugins: Record<string, Record<string, Record<string, unknown>>> }
  t.same(doc.proxy_plugins.stargz, { type: 'snapshot', address: '/run/stargzd/stargzd.sock', exports: { root: '/var/lib/stargzd/' } }, '[proxy_plugins.stargz] with [proxy_plugins.stargz.exports] root')
  t.same(doc.plugins['io.containerd.grpc.v1.cri']?.containerd, { snapshotter: 'stargz', disable_snapshot_annotations: false }, 'CRI uses stargz with snapshot annotations')
  t.equal(afterSecond, afterFirst, 'the second run leaves containerd\'s config byte for byte as it was')
  const backups = (await readdir(join(T, 'etc/containerd'))).filter((f) => f.startsWith('config.toml.bak.'))
  t.equal(backups.length, 1, 'one backup, from the run that changed the file')
  t.equal(await readFile(join(T, 'etc/containerd', backups[0] ?? 'none'), 'utf8'), DEBIAN_CONFIG, 'the backup is the old config')
  t.match(first.stderr, /config\.toml: changed/, 'first run: changed')
  t.match(second.stderr, /config\.toml: unchanged/, 'second run: unchanged')

  // systemd: never stop/disable/mask; containerd try-restarted only when its config changed.
  const all = [...first.calls, ...second.calls]
  t.notOk(all.some((c) => /^systemctl .*\b(stop|disable|mask|kill|isolate)\b/.test(c)), `systemctl never stops or disables anything: ${JSON.stringify(all)}`)
  t.notOk(all.some((c) => c.startsWith('systemctl') && /containerd/.test(c) && !c.startsWith('systemctl try-restart containerd')), 'containerd: only try-restart, never start/stop/disable')
  t.same(first.calls.filter((c) => c.startsWith('systemctl')), ['systemctl daemon-reload', 'systemctl enable stargz-fused.service', 'systemctl start stargz-fused.service', 'systemctl enable stargzd.service', 'systemctl restart stargzd.service', 'systemctl try-restart containerd.service'], 'first run: reload, enable + start (never restart) stargz-fused, enable + restart stargzd, try-restart containerd')
  t.same(second.calls.filter((c) => c.startsWith('systemctl')), ['systemctl daemon-reload', 'systemctl enable stargz-fused.service', 'systemctl start stargz-fused.service', 'systemctl enable stargzd.service', 'systemctl restart stargzd.service'], 'second run: containerd left alone, stargz-fused not restarted')
  t.notOk(all.some((c) => c.startsWith('apt-get')), 'no packages installed (the runtime ones are present)')
  t.notOk(all.some((c) => c.startsWith('modprobe')), 'no modprobe into a scratch root')

  // The tree: runtime dependencies only, loadable; wrappers; unit; config kept.
  const mods = await readdir(join(prefix, 'node_modules'))
  for (const m of ['better-sqlite3', 'fuse-native', 'pino', 'smol-toml', 'undici', '@grpc']) t.ok(mods.includes(m), `runtime dependency ${m} installed`)
  for (const m of ['typescript', 'tap', 'eslint', 'tsx', 'fast-check', 'typescript-eslint', 'esbuild']) t.notOk(mods.includes(m), `dev dependency ${m} not installed`)
  t.notOk(existsSync(join(prefix, 'dist/test')), 'no compiled tests in the prefix')
  t.equal(await readlink(join(T, 'usr/local/bin/stargzd')), join(prefix, 'bin/stargzd'), 'stargzd on the bin dir')
  const help = await execFileP(join(T, 'usr/local/bin/stargzd'), ['--help'], { env: { ...process.env, NODE_PATH: '' }, cwd: T })
  t.match(help.stdout, /usage: stargzd/, 'the installed stargzd runs from the prefix alone')
  t.match(unit, new RegExp(`^ExecStart=${prefix}/bin/stargzd --config ${T}/etc/stargzd/config.toml$`, 'm'), 'unit ExecStart points at the prefix')
  // stargz-fused (issue #11): its unit, the drop-in that puts stargzd on it, and its wrapper.
  const fusedUnit = await readFile(join(T, 'etc/systemd/system/stargz-fused.service'), 'utf8')
  t.match(fusedUnit, new RegExp(`^ExecStart=${prefix}/bin/stargz-fused --config ${T}/etc/stargzd/config.toml --fuse-manager default$`, 'm'), 'stargz-fused unit ExecStart points at the prefix')
  const dropIn = await readFile(join(T, 'etc/systemd/system/stargzd.service.d/10-fuse-manager.conf'), 'utf8')
  t.match(dropIn, new RegExp(`^ExecStart=\n^ExecStart=${prefix}/bin/stargzd --config ${T}/etc/stargzd/config.toml --fuse-manager default$`, 'm'), 'the drop-in runs stargzd with --fuse-manager from the prefix')
  t.equal(await readlink(join(T, 'usr/local/bin/stargz-fused')), join(prefix, 'bin/stargz-fused'), 'stargz-fused on the bin dir')
  t.ok((await readFile(join(T, 'etc/stargzd/config.toml'), 'utf8')).endsWith(userEdit), 'an existing /etc/stargzd/config.toml is kept')
})
