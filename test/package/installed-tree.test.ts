// stargzd-test: e2e (builds the product and starts the daemon from the packed tree)
/**
 * What `npm pack` ships is enough to run: build src/ + daemon/ with tsconfig.build.json into a
 * scratch copy, pack it, unpack the tarball elsewhere (with node_modules next to it, as an install
 * has), and start stargzd and `stargz` from there. Nothing of test/, harness/ or bench/ is in it.
 */
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { REPO } from '../../harness/cli.js'

const execFileP = promisify(execFile)

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules') continue
    if (e.isDirectory()) out.push(...await listFiles(join(dir, e.name), `${prefix}${e.name}/`))
    else out.push(prefix + e.name)
  }
  return out
}

t.test('the packed tree runs the daemon and the CLI', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-installed-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const src = join(dir, 'src-copy')
  await mkdir(src)
  for (const f of ['package.json', 'README.md', 'proto', 'config']) await cp(join(REPO, f), join(src, f), { recursive: true })
  await execFileP(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.build.json'), '--outDir', join(src, 'dist'), '--sourceMap', 'false'], { cwd: REPO, maxBuffer: 16 << 20 })
  const { stdout } = await execFileP('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: src, encoding: 'utf8' })
  const tgz = join(dir, stdout.trim().split('\n').pop() ?? '')
  const inst = join(dir, 'opt')
  await mkdir(inst)
  await execFileP('tar', ['-xzf', tgz, '-C', inst])
  const root = join(inst, 'package')
  await symlink(join(REPO, 'node_modules'), join(root, 'node_modules'))

  const files = await listFiles(root)
  t.same(files.filter((f) => !/^(dist\/(src|daemon)\/.*\.js|proto\/.*\.proto|config\/[^/]+\.toml|package\.json|README\.md)$/.test(f)), [], 'only product output, protos, sample configs')

  const help = await execFileP(process.execPath, [join(root, 'dist/src/cli/main.js'), '--help'], { encoding: 'utf8' })
  t.match(help.stdout, /usage: stargz/)

  const daemon = spawn(process.execPath, [join(root, 'dist/daemon/stargzd.js'), '--root', join(dir, 'root'), '--address', join(dir, 's.sock')], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (daemon.exitCode === null) daemon.kill('SIGKILL') })
  const msgs: string[] = []
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 60_000)
    createInterface({ input: daemon.stdout }).on('line', (l) => {
      try { msgs.push(String((JSON.parse(l) as { msg?: string }).msg)) } catch { msgs.push(l) }
      if (msgs.at(-1) === 'ready') { clearTimeout(timer); resolve(true) }
    })
    daemon.on('exit', () => { clearTimeout(timer); resolve(false) })
  })
  t.ok(ready, `the daemon from the packed tree is ready (${msgs.join(', ')})`)
  const exited = new Promise<number | null>((r) => daemon.once('exit', (code) => r(code)))
  daemon.kill('SIGTERM')
  t.equal(await exited, 0, 'and stops cleanly')
})
