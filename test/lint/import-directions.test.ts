// stargzd-test: unit (the import strings below are snippets for ESLint, not imports)
/**
 * The import directions of issue #9 §3, enforced by eslint.config.js: shown failing on snippets
 * that break them, and passing on the imports that look alike but are allowed (src/bench from
 * src/cli, the harness from a benchmark).
 */
import t from 'tap'
import { ESLint } from 'eslint'
import { join } from 'node:path'
import { REPO } from '../../harness/cli.js'

const eslint = new ESLint({ cwd: REPO })

async function importErrors(filePath: string, code: string): Promise<string[]> {
  const [res] = await eslint.lintText(code, { filePath: join(REPO, filePath) })
  return (res?.messages ?? [])
    .filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax')
    .map((m) => m.message)
}

const cases: Array<{ file: string; code: string; refused: boolean }> = [
  // The product imports nothing outside src/.
  { file: 'src/cli/commands/x.ts', code: "import { startRegistry } from '../../../harness/registry.js'\nexport const x = startRegistry\n", refused: true },
  { file: 'src/bench/x.ts', code: "import type { X } from '../../bench/lib/images.js'\nexport type Y = X\n", refused: true },
  { file: 'src/x.ts', code: "export { sh } from '../test/util.js'\n", refused: true },
  { file: 'src/a/b/c/d.ts', code: "import '../../../../scripts/bench/build-images.js'\n", refused: true },
  { file: 'src/cli/x.ts', code: "export const m = await import('../../harness/tree.js')\n", refused: true },
  { file: 'daemon/x.ts', code: "import { startContainerd } from '../harness/containerd.js'\nexport const s = startContainerd\n", refused: true },
  // harness/ serves tests and benchmarks and imports neither.
  { file: 'harness/x.ts', code: "import { y } from '../test/daemon/y.js'\nexport const z = y\n", refused: true },
  { file: 'harness/x.ts', code: "import { y } from '../bench/fuse.js'\nexport const z = y\n", refused: true },
  // bench/ does not reach into tests.
  { file: 'bench/x.ts', code: "import { y } from '../test/helpers/image.js'\nexport const z = y\n", refused: true },
  // Allowed look-alikes.
  { file: 'src/cli/commands/x.ts', code: "import { runBench } from '../../bench/run-bench.js'\nexport const r = runBench\n", refused: false },
  { file: 'src/bench/x.ts', code: "import { buildBenchImage } from './image/images.js'\nexport const b = buildBenchImage\n", refused: false },
  { file: 'harness/x.ts', code: "import { startBenchRegistry } from '../src/bench/registry.js'\nexport const s = startBenchRegistry\n", refused: false },
  { file: 'bench/x.ts', code: "import { startRegistry } from '../harness/registry.js'\nexport const s = startRegistry\n", refused: false },
  { file: 'test/x/y.test.ts', code: "import { startRegistry } from '../../harness/registry.js'\nimport { runBench } from '../../src/bench/run-bench.js'\nexport const s = [startRegistry, runBench]\n", refused: false },
]

for (const c of cases) {
  t.test(`${c.refused ? 'refused' : 'allowed'}: ${c.file}: ${c.code.split('\n')[0]}`, async (t) => {
    const errors = await importErrors(c.file, c.code)
    if (c.refused) {
      t.equal(errors.length, 1, 'one import-direction error')
      t.match(errors[0] ?? '', /imports? (nothing|only|neither)|uses harness/, 'the message says which direction')
    } else {
      t.same(errors, [], 'no import-direction error')
    }
  })
}
