/**
 * stargz optimize SRC DST [--period SECONDS] [--prioritized-from FILE] [--record-out FILE]
 *   [--env K=V]... [--user U[:G]] [--workdir DIR] [--mount SRC:DST[:ro]]... [--net-host]
 *   [--state-dir DIR] [convert flags] -- CMD [ARGS...]
 *
 * The workload runs as a runc container (src/optimize/oci-spec.ts): its own network namespace
 * with loopback only unless --net-host, a minimal /dev, default capabilities, no_new_privs.
 *
 * Runs the workload (CMD, or the image's entrypoint + cmd) once on a lazy mount of SRC, records
 * the files each layer served first, and converts SRC to DST with those files at the front of
 * their layers. --prioritized-from skips the run and uses a recorded list.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pino } from 'pino'
import { InvalidArgumentError } from '../../errors.js'
import { parseLocation } from '../../convert/location.js'
import { formatPrioritizedList, readPrioritizedList } from '../../convert/prioritized-list.js'
import { listMounts } from '../../fuse/unmount.js'
import { optimizeImage, type OptimizeOptions } from '../../optimize/optimize-image.js'
import { flagBool, flagString, parseArgs } from '../args.js'
import { convertFlagSpec, convertOptionsFromArgs, openEnds, printSummary, reportMissing } from './convert.js'

export const summary = 'run a workload on a lazy mount of an image, then convert it with the files it read first'

const USAGE = 'usage: stargz optimize SRC DST [--period SECONDS] [--prioritized-from FILE] [--record-out FILE] [--env K=V]... [--user U[:G]] [--workdir DIR] [--mount SRC:DST[:ro]]... [--net-host] [--state-dir DIR] [convert flags] -- CMD [ARGS...]'

const DEFAULT_PERIOD_SECONDS = 10

/** Pulls every `--env K=V` / `--env=K=V` out of the flags (before `--`); parseArgs keeps one value per flag. */
export function extractRepeated(argv: string[], name: string): { rest: string[]; values: string[] } {
  const rest: string[] = []
  const values: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--') { rest.push(...argv.slice(i)); break }
    if (a === `--${name}`) {
      const v = argv[++i]
      if (v === undefined) throw new InvalidArgumentError(`flag --${name} needs a value`)
      values.push(v)
    } else if (a.startsWith(`--${name}=`)) values.push(a.slice(name.length + 3))
    else rest.push(a)
  }
  return { rest, values }
}

function periodMs(v: string | undefined): number {
  if (v === undefined) return DEFAULT_PERIOD_SECONDS * 1000
  if (!/^\d+(\.\d+)?$/.test(v) || Number(v) <= 0) throw new InvalidArgumentError(`--period: expected a positive number of seconds, got ${JSON.stringify(v)}`)
  return Math.round(Number(v) * 1000)
}

export async function run(argv: string[]): Promise<number> {
  const { rest: afterEnv, values: env } = extractRepeated(argv, 'env')
  const { rest, values: mounts } = extractRepeated(afterEnv, 'mount')
  const args = parseArgs(rest, {
    values: [...convertFlagSpec.values, 'period', 'record-out', 'user', 'workdir', 'state-dir'],
    booleans: [...convertFlagSpec.booleans, 'net-host'],
  })
  if (flagBool(args, 'help')) { process.stdout.write(USAGE + '\n'); return 0 }
  if (args.positionals.length !== 2) throw new InvalidArgumentError(`expected SRC and DST\n${USAGE}`)
  const src = parseLocation(args.positionals[0] as string, 'source')
  const dst = parseLocation(args.positionals[1] as string, 'destination')
  const period = periodMs(flagString(args, 'period'))
  const listPath = flagString(args, 'prioritized-from')
  const recordOut = flagString(args, 'record-out')
  const base = await convertOptionsFromArgs(args)
  const allPlatforms = flagBool(args, 'all-platforms')
  const user = flagString(args, 'user')
  const workdir = flagString(args, 'workdir')

  const givenState = flagString(args, 'state-dir')
  const stateDir = givenState === undefined ? await mkdtemp(join(tmpdir(), 'stargz-optimize-')) : resolve(givenState)
  const logger = pino({ name: 'stargz-optimize', level: process.env.STARGZ_LOG_LEVEL ?? 'warn' }, pino.destination(2))
  const opts: OptimizeOptions = { ...base, allPlatforms }
  if (listPath !== undefined) {
    opts.records = await readPrioritizedList(listPath)
  } else {
    opts.record = {
      stateDir,
      periodMs: period,
      overrides: {
        ...(args.rest.length > 0 ? { command: args.rest } : {}),
        ...(env.length > 0 ? { env } : {}),
        ...(user !== undefined ? { user } : {}),
        ...(workdir !== undefined ? { workdir } : {}),
        ...(mounts.length > 0 ? { mounts } : {}),
        ...(flagBool(args, 'net-host') ? { netHost: true } : {}),
      },
      output: process.stderr,
      logger,
    }
  }
  // Missing prioritized files are summarised per image, not warned about per layer.
  const onWarning = base.onWarning
  opts.onWarning = (m) => { if (!m.includes('prioritized file')) onWarning?.(m) }

  const ends = openEnds(src, dst, args)
  try {
    const r = await optimizeImage(ends.input, ends.output, opts)
    base.progress?.close()
    if (recordOut !== undefined) await writeFile(recordOut, formatPrioritizedList(r.records))
    if (r.run) {
      const how = r.run.timedOut ? `stopped after ${period / 1000} s` : r.run.signal ? `killed by ${r.run.signal}` : `exited with ${r.run.exitCode}`
      process.stderr.write(`stargz: workload ${how}; recorded ${r.records.length} file(s)\n`)
    }
    reportMissing(r.summary, r.records)
    printSummary(r.summary, base.json)
    return 0
  } finally {
    base.progress?.close()
    await ends.close()
    logger.flush()
    if (givenState === undefined) {
      const busy = (await listMounts()).some((m) => m.mountpoint === stateDir || m.mountpoint.startsWith(stateDir + '/'))
      if (!busy) await rm(stateDir, { recursive: true, force: true })
    }
  }
}
