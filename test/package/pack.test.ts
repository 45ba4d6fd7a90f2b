/**
 * What `npm pack` ships: the compiled product (dist/src, dist/daemon), the protos it loads at run
 * time and the sample configs — never tests, the harness, benchmarks, scripts or TypeScript
 * sources, even when a stale full build left dist/test or dist/bench behind. Packs a copy of
 * package.json over a tree holding one file of every kind.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { REPO } from '../../harness/cli.js'

const execFileP = promisify(execFile)

t.test('npm pack ships only dist/src, dist/daemon, proto and config', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'stargz-pack-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await cp(join(REPO, 'package.json'), join(dir, 'package.json'))
  const tree = [
    'dist/src/cli/main.js', 'dist/src/cli/main.js.map', 'dist/daemon/stargzd.js', 'dist/src/bench/run-bench.js',
    'dist/test/daemon/daemon.test.js', 'dist/harness/registry.js', 'dist/bench/fuse.js', 'dist/scripts/bench/build-images.js',
    'src/cli/main.ts', 'daemon/stargzd.ts', 'harness/registry.ts', 'test/x.test.ts', 'bench/fuse.ts', 'scripts/install-system.sh',
    'proto/containerd/types/mount.proto', 'config/config.toml', 'tsconfig.json', 'eslint.config.js',
  ]
  for (const f of tree) {
    await mkdir(dirname(join(dir, f)), { recursive: true })
    await writeFile(join(dir, f), '// x\n')
  }
  const { stdout } = await execFileP('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' })
  const files = (JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]?.files.map((f) => f.path).sort() ?? []
  t.same(files, [
    'config/config.toml',
    'dist/daemon/stargzd.js',
    'dist/src/bench/run-bench.js',
    'dist/src/cli/main.js',
    'package.json',
    'proto/containerd/types/mount.proto',
  ])
})

t.test('the build tsconfig compiles src/ and daemon/ only', async (t) => {
  const { stdout } = await execFileP(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--listFilesOnly'], { cwd: REPO, encoding: 'utf8', maxBuffer: 64 << 20 })
  const ours = stdout.split('\n').filter((f) => f.startsWith(REPO) && !f.includes('/node_modules/')).map((f) => f.slice(REPO.length).replace(/^\//, ''))
  t.ok(ours.length > 50, `${ours.length} files`)
  t.same(ours.filter((f) => !f.startsWith('src/') && !f.startsWith('daemon/')), [], 'nothing outside src/ and daemon/')
})
