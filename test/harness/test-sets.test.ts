/**
 * npm run test:unit / test:e2e split the suite in two without leaving a file out: every test file
 * is in exactly one set, and files that start real components are e2e.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO } from '../../harness/cli.js'

const execFileP = promisify(execFile)
const list = async (mode: string): Promise<string[]> =>
  (await execFileP(process.execPath, [join(REPO, 'scripts/run-tests.mjs'), mode], { cwd: REPO, encoding: 'utf8' })).stdout.split('\n').filter(Boolean)

t.test('unit and e2e partition the test files', async (t) => {
  const [unit, e2e] = await Promise.all([list('--list-unit'), list('--list-e2e')])
  const all = (await execFileP('git', ['ls-files', '--cached', '--others', '--exclude-standard', 'test/*.test.ts', 'test/**/*.test.ts'], { cwd: REPO, encoding: 'utf8' })).stdout.split('\n').filter(Boolean)
  t.same([...unit, ...e2e].sort(), [...new Set(all)].sort(), 'every file in one set')
  t.same(unit.filter((f) => e2e.includes(f)), [], 'no file in both')
  for (const f of ['test/daemon/daemon.test.ts', 'test/registry/blob.test.ts', 'test/fuse/layer-fs.test.ts', 'test/grpc/suite.test.ts']) t.ok(e2e.includes(f), `${f} is e2e`)
  for (const f of ['test/config/config.test.ts', 'test/estargz/reader.test.ts', 'test/lint/import-directions.test.ts', 'test/harness/test-sets.test.ts']) t.ok(unit.includes(f), `${f} is unit`)
})
