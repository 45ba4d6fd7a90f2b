/**
 * npm run bench:startup [-- FLAGS]: `stargz bench` (src/cli/commands/bench.ts) from source.
 *   node --import tsx bench/startup.ts --images busybox --runs 1 --out /tmp/bench-out
 */
import * as bench from '../src/cli/commands/bench.js'
import { runCommand } from '../src/cli/dispatch.js'

runCommand(bench, process.argv.slice(2)).then(
  (code) => { process.exitCode = code },
  (e: unknown) => {
    process.stderr.write(`stargz bench: ${(e as Error)?.message ?? String(e)}\n`)
    if (process.env.STARGZ_DEBUG) process.stderr.write(String((e as Error)?.stack) + '\n')
    process.exitCode = 1
  },
)
