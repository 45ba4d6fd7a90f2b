/**
 * stargz bench [--images busybox,python3,huge] [--modes legacy,estargz-noopt,estargz,ctr-remote-noopt,ctr-remote,gzindex] [--snapshotters ours,reference,baseline] [--baseline-dir DIR] [--timeline] [--runs N]
 *   [--rate-mbit 200] [--rtt-ms 20] [--out DIR] [--workload NAME] [--fixture-dir DIR]
 *   [--no-drop-caches] [--no-background-fetch] [--base-dir DIR] [--step-timeout-sec S]
 *
 * HelloBench-style start-up benchmark (src/bench/run-bench.ts): pull + create + run of each
 * image's workload through containerd, full pull (overlayfs) vs lazy pull through stargzd, with
 * a local registry behind an emulated WAN link. Needs root. Prints the Markdown table on stdout
 * (progress on stderr) and writes results.json, results.md and chart.svg to --out.
 */
import { join, resolve } from 'node:path'
import { InvalidArgumentError } from '../../errors.js'
import { BENCH_IMAGES, type BenchImageName } from '../../bench/image/images.js'
import { installSignalCleanup } from '../../bench/link/wan-link.js'
import { BENCH_DAEMONS, BENCH_MODES, type BenchDaemon, type BenchMode } from '../../bench/measure.js'
import { CancelledError, installBenchSignalHandlers } from '../../bench/proc.js'
import { runBench } from '../../bench/run-bench.js'
import { flagBool, flagInt, flagString, positionals, usageError, type CommandSpec, type ParsedArgs } from '../args.js'

export const spec: CommandSpec = {
  name: 'stargz bench',
  summary: 'start-up benchmark: full pull vs lazy eStargz (unoptimized, optimized) through containerd',
  args: '',
  options: [
    { name: 'images', type: 'string', value: 'LIST', help: `comma-separated images (default ${BENCH_IMAGES.join(',')})` },
    { name: 'modes', type: 'string', value: 'LIST', help: `comma-separated modes of ${BENCH_MODES.join(',')} (default legacy,estargz-noopt,estargz)` },
    { name: 'snapshotters', type: 'string', value: 'LIST', help: `comma-separated daemons of ${BENCH_DAEMONS.join(',')} (default ours)` },
    { name: 'baseline-dir', type: 'string', value: 'DIR', help: 'source tree with daemon/stargzd.ts for --snapshotters baseline' },
    { name: 'timeline', type: 'boolean', help: 'record a per-run timeline' },
    { name: 'runs', type: 'string', value: 'N', help: 'runs per image and mode (default 3)' },
    { name: 'rate-mbit', type: 'string', value: 'MBIT', help: 'emulated link rate (default 200)' },
    { name: 'rtt-ms', type: 'string', value: 'MS', help: 'emulated round-trip time (default 20)' },
    { name: 'out', type: 'string', value: 'DIR', help: 'results directory (default /var/tmp/stargzd-bench/<time>)' },
    { name: 'workload', type: 'string', value: 'NAME', help: 'run only this workload of the images' },
    { name: 'fixture-dir', type: 'string', value: 'DIR', help: 'prebuilt images ($STARGZD_FIXTURE_DIR, default /var/tmp/stargzd-fixtures)' },
    { name: 'base-dir', type: 'string', value: 'DIR', help: 'scratch dir for containerd, stargzd and the registry' },
    { name: 'step-timeout-sec', type: 'string', value: 'S', help: 'give up on one pull/run step after S seconds (default 1200)' },
    { name: 'no-drop-caches', type: 'boolean', help: 'do not drop the page cache between runs' },
    { name: 'no-background-fetch', type: 'boolean', help: 'run stargzd with background fetch off' },
  ],
  notes: 'Needs root. Prints the Markdown table on stdout (progress on stderr) and writes results.json, results.md and chart.svg to --out.',
}

function list<T extends string>(v: string | undefined, all: readonly T[], what: string): T[] {
  if (v === undefined) return [...all]
  const out = v.split(',').map((s) => s.trim()).filter(Boolean)
  for (const x of out) if (!(all as readonly string[]).includes(x)) throw usageError(`--${what}: unknown ${JSON.stringify(x)} (one of ${all.join(', ')})`)
  if (out.length === 0) throw usageError(`--${what}: empty`)
  return [...new Set(out)] as T[]
}

function positiveNumber(v: string | undefined, name: string, dflt: number, allowZero = false): number {
  if (v === undefined) return dflt
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) throw usageError(`--${name}: expected a ${allowZero ? 'non-negative' : 'positive'} number, got ${JSON.stringify(v)}`)
  return n
}

export async function run(args: ParsedArgs): Promise<number> {
  positionals(args, spec, 0)
  if (process.getuid?.() !== 0) throw new InvalidArgumentError('stargz bench needs root (network namespace, tc, containerd, FUSE, drop_caches)')
  const images = list<BenchImageName>(flagString(args, 'images'), BENCH_IMAGES, 'images')
  const modes = list<BenchMode>(flagString(args, 'modes') ?? 'legacy,estargz-noopt,estargz', BENCH_MODES, 'modes')
  // Reference first in each pair, so neither side always runs on the machine the other just warmed.
  const daemons = list<BenchDaemon>(flagString(args, 'snapshotters') ?? 'ours', BENCH_DAEMONS, 'snapshotters')
    .sort((a, b) => (a === 'reference' ? -1 : b === 'reference' ? 1 : 0))
  if (daemons.includes('baseline') && !flagString(args, 'baseline-dir')) throw new InvalidArgumentError('--snapshotters baseline needs --baseline-dir (a source tree with daemon/stargzd.ts)')
  const outGiven = flagString(args, 'out')
  const outDir = resolve(outGiven ?? join('/var/tmp/stargzd-bench', new Date().toISOString().replace(/[:.]/g, '-')))
  const stepTimeout = flagString(args, 'step-timeout-sec')
  const baseDir = flagString(args, 'base-dir')
  installSignalCleanup()
  installBenchSignalHandlers()
  const t0 = performance.now()
  const log = (m: string): void => { process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(5)} s] ${m}\n`) }
  let outcome: Awaited<ReturnType<typeof runBench>>
  try {
    outcome = await runBench({
      images,
      modes,
      daemons,
      ...(flagString(args, 'baseline-dir') ? { baselineDir: resolve(flagString(args, 'baseline-dir') as string) } : {}),
      timeline: flagBool(args, 'timeline'),
      runs: flagInt(args, 'runs') ?? 3,
      rateMbit: positiveNumber(flagString(args, 'rate-mbit'), 'rate-mbit', 200),
      rttMs: positiveNumber(flagString(args, 'rtt-ms'), 'rtt-ms', 20, true),
      outDir,
      ...(flagString(args, 'workload') ? { workload: flagString(args, 'workload') as string } : {}),
      fixtureDir: resolve(flagString(args, 'fixture-dir') ?? process.env.STARGZD_FIXTURE_DIR ?? '/var/tmp/stargzd-fixtures'),
      dropCaches: !flagBool(args, 'no-drop-caches'),
      backgroundFetch: !flagBool(args, 'no-background-fetch'),
      ...(baseDir ? { baseDir: resolve(baseDir) } : {}),
      ...(stepTimeout ? { stepTimeoutMs: positiveNumber(stepTimeout, 'step-timeout-sec', 1200) * 1000 } : {}),
      log,
    })
  } catch (e) {
    if (!(e instanceof CancelledError)) throw e
    log('interrupted; everything started was torn down')
    return 130
  }
  const { markdown, failed } = outcome
  process.stdout.write(markdown)
  log(`wrote ${join(outDir, 'results.json')}, results.md, chart.svg`)
  return failed ? 1 : 0
}
