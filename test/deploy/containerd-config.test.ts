/** mergeContainerdConfig: every starting point ends with stargz set, and a second merge changes nothing. */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'smol-toml'
import { REPO } from '../../harness/cli.js'
import { mergeContainerdConfig } from '../../src/install/containerd-config.js'

const S = { address: '/run/stargzd/stargzd.sock', root: '/var/lib/stargzd' }

// Debian 12's /etc/containerd/config.toml, plus an operator's comment.
const DEBIAN = `version = 2

# operator: keep the CNI paths
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
`

type Doc = Record<string, Record<string, Record<string, Record<string, unknown>>>>

function check(t: Test, text: string, cri: 'v2' | 'v3' = 'v2'): void {
  const d = parse(text) as unknown as Doc
  t.same(d.proxy_plugins?.stargz, { type: 'snapshot', address: S.address, exports: { root: '/var/lib/stargzd/' } }, 'proxy_plugins.stargz with exports.root')
  const table = cri === 'v2' ? d.plugins?.['io.containerd.grpc.v1.cri']?.containerd : d.plugins?.['io.containerd.cri.v1.images']
  t.equal(table?.snapshotter, 'stargz', 'CRI snapshotter = "stargz"')
  t.equal(table?.disable_snapshot_annotations, false, 'CRI disable_snapshot_annotations = false')
  const again = mergeContainerdConfig(text, S)
  t.same([again.changed, again.mode, again.text], [false, 'unchanged', text], 'a second merge changes nothing')
}

t.test('no file: version 2 and our tables', async (t) => {
  const r = mergeContainerdConfig(undefined, S)
  t.equal(r.changed, true)
  t.match(r.text, /^version = 2\n/)
  check(t, r.text)
})

t.test('Debian default: appended, the operator\'s text and comments kept', async (t) => {
  const r = mergeContainerdConfig(DEBIAN, S)
  t.equal(r.mode, 'appended')
  t.ok(r.text.startsWith(DEBIAN), 'the old text is the prefix of the new one')
  t.equal((parse(r.text) as unknown as Doc).plugins?.['io.containerd.grpc.v1.cri']?.cni?.bin_dir, '/usr/lib/cni', 'CNI settings kept')
  check(t, r.text)
})

t.test('snapshotter already set to overlayfs: re-serialised with ours', async (t) => {
  const text = `version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n  default_runtime_name = "runc"\n[proxy_plugins.stargz]\n  type = "snapshot"\n  address = "/old/path.sock"\n`
  const r = mergeContainerdConfig(text, S)
  t.equal(r.mode, 'rewritten')
  t.equal((parse(r.text) as unknown as Doc).plugins?.['io.containerd.grpc.v1.cri']?.containerd?.default_runtime_name, 'runc', 'other keys kept')
  check(t, r.text)
})

t.test('already configured: unchanged', async (t) => {
  const first = mergeContainerdConfig(DEBIAN, S).text
  t.same(mergeContainerdConfig(first, S), { text: first, changed: false, mode: 'unchanged' })
})

t.test('containerd 2.x (version 3): the CRI images plugin', async (t) => {
  const r = mergeContainerdConfig('version = 3\n', S)
  check(t, r.text, 'v3')
})

t.test('comments-only file counts as empty; version 1 and bad TOML are refused', async (t) => {
  check(t, mergeContainerdConfig('# nothing yet\n', S).text)
  t.throws(() => mergeContainerdConfig('root = "/var/lib/containerd"\n', S), /version 1/)
  t.throws(() => mergeContainerdConfig('version = 2\n[a\n', S), /not valid TOML/)
  t.throws(() => mergeContainerdConfig('version = 2\nproxy_plugins = 3\n', S), /not a table/)
})

t.test('merge-containerd-config CLI: usage, refusal leaves the file alone, mode and backup', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sgd-merge-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', join(REPO, 'src/install/merge-containerd-config.ts'), ...args], { cwd: REPO }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    })
  })
  t.equal((await run([])).code, 2, 'no --config: exit 2')
  t.equal((await run(['--config', join(dir, 'x'), '--bogus'])).code, 2, 'unknown flag: exit 2')
  const v1 = join(dir, 'v1.toml')
  await writeFile(v1, 'root = "/var/lib/containerd"\n')
  const r1 = await run(['--config', v1])
  t.equal(r1.code, 1, 'a version 1 config: exit 1')
  t.match(r1.stderr, /version 1/, 'saying why')
  t.equal(await readFile(v1, 'utf8'), 'root = "/var/lib/containerd"\n', 'and the file is untouched')
  const cfg = join(dir, 'config.toml')
  await writeFile(cfg, 'version = 2\n', { mode: 0o600 })
  const r2 = await run(['--config', cfg, '--address', '/run/x.sock', '--root', '/var/lib/x'])
  t.same([r2.code, r2.stdout], [0, 'changed\n'])
  t.equal((await stat(cfg)).mode & 0o777, 0o600, 'the file keeps its mode')
  t.match(await readFile(cfg, 'utf8'), /address = "\/run\/x\.sock"/)
  t.equal((await readdir(dir)).filter((f) => f.startsWith('config.toml.bak.')).length, 1, 'one backup')
  const r3 = await run(['--config', cfg, '--address', '/run/x.sock', '--root', '/var/lib/x'])
  t.same([r3.code, r3.stdout], [0, 'unchanged\n'], 'second run: unchanged')
  t.equal((await readdir(dir)).filter((f) => f.startsWith('config.toml.bak.')).length, 1, 'and no new backup')
})
