/**
 * stargz optimize SRC DST [flags] [-- CMD [ARGS...]]
 *
 * The workload runs as a runc container (src/optimize/oci-spec.ts): its own network namespace
 * with loopback only unless --net-host, a minimal /dev, default capabilities, no_new_privs.
 *
 * Runs the workload (CMD, or the image's entrypoint + cmd) once on a lazy mount of SRC, records
 * the files each layer served first, and converts SRC to DST with those files at the front of
 * their layers. --prioritized-from skips the run and uses a recorded list.
 *
 * This file only turns flags into OptimizeOptions; the workload runner (src/optimize/) decides
 * how each override is applied. ctr-remote's `image optimize` names are accepted: --entrypoint
 * and --args (JSON arrays), --env-file, --mount, --cwd, --wait-on-line.
 */
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pino } from 'pino'
import { NotFoundError } from '../../errors.js'
import { parseLocation } from '../../convert/location.js'
import { formatPrioritizedList, readPrioritizedList } from '../../convert/prioritized-list.js'
import { listMounts } from '../../fuse/unmount.js'
import { optimizeImage, type OptimizeOptions } from '../../optimize/optimize-image.js'
import type { WorkloadOverrides } from '../../optimize/workload.js'
import { flagBool, flagList, flagString, positionals, UsageError, type CommandSpec, type ParsedArgs } from '../args.js'
import { CONVERT_OPTIONS, convertOptionsFromArgs, openEnds, printSummary, reportMissing } from './convert.js'

export const spec: CommandSpec = {
  name: 'stargz optimize',
  summary: 'run a workload on a lazy mount of an image, then convert it with the files it read first',
  args: 'SRC DST [-- CMD [ARGS...]]',
  options: [
    ...CONVERT_OPTIONS,
    { name: 'period', type: 'string', value: 'SECONDS', help: 'how long to run the workload and record (default 10)' },
    { name: 'record-out', type: 'string', value: 'FILE', help: 'write the recorded files (JSON lines) here' },
    { name: 'entrypoint', type: 'string', value: 'JSON', help: 'entrypoint to run instead of the image\'s, as a JSON array' },
    { name: 'args', type: 'string', value: 'JSON', help: 'arguments instead of the image\'s cmd, as a JSON array' },
    { name: 'env', type: 'string', multiple: true, value: 'K=V', help: 'add or override an environment variable' },
    { name: 'env-file', type: 'string', multiple: true, value: 'FILE', help: 'environment variables from a file, K=V one per line (# comments)' },
    { name: 'user', type: 'string', value: 'U[:G]', help: 'user (and group) to run as instead of the image\'s' },
    { name: 'workdir', type: 'string', value: 'DIR', help: 'working directory instead of the image\'s' },
    { name: 'cwd', type: 'string', value: 'DIR', aliasOf: 'workdir', help: 'ctr-remote name' },
    { name: 'mount', type: 'string', multiple: true, value: 'SPEC', help: 'bind a host directory: SRC:DST[:ro], or ctr-remote\'s type=bind,src=/a,dst=/b[,options=ro]' },
    { name: 'net-host', type: 'boolean', help: 'run the workload in the host network namespace (default: loopback only)' },
    { name: 'wait-on-line', type: 'string', value: 'TEXT', help: 'stop recording when the workload prints a line containing TEXT' },
    { name: 'state-dir', type: 'string', value: 'DIR', help: 'scratch dir for mounts (default: a temp dir)' },
  ],
  notes: 'A command after `--` replaces the image\'s entrypoint and cmd (like --entrypoint + --args).',
}

const DEFAULT_PERIOD_SECONDS = 10

function jsonArgv(v: string | undefined, flag: string): string[] | undefined {
  if (v === undefined) return undefined
  let j: unknown
  try { j = JSON.parse(v) } catch (e) {
    throw new UsageError(`--${flag}: expected a JSON array of strings, e.g. '["/bin/sh","-c"]', got ${JSON.stringify(v)}`, { cause: e })
  }
  if (!Array.isArray(j) || !j.every((x) => typeof x === 'string')) throw new UsageError(`--${flag}: expected a JSON array of strings, got ${JSON.stringify(v)}`)
  return j as string[]
}

/** `KEY=VALUE` lines; blank lines and `#` comments skipped, as docker/ctr --env-file. */
export function parseEnvFile(text: string, where: string): string[] {
  const out: string[] = []
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/\r$/, '').trim()
    if (line === '' || line.startsWith('#')) continue
    if (!/^[^=\s]+=/.test(line)) throw new UsageError(`${where} line ${i + 1}: expected KEY=VALUE, got ${JSON.stringify(line)}`)
    out.push(line)
  }
  return out
}

async function readEnvFiles(paths: string[]): Promise<string[]> {
  const out: string[] = []
  for (const p of paths) {
    let text: string
    try { text = await readFile(p, 'utf8') } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`--env-file ${p} does not exist`, { cause: e })
      throw e
    }
    out.push(...parseEnvFile(text, p))
  }
  return out
}

/**
 * One `--mount` as the runner takes it, `SRC:DST[:ro|rw]` (docker -v). ctr-remote's form,
 * `type=bind,src=/a,dst=/b[,options=ro:rbind]` (also source=, destination=, target=), is
 * translated to it; only bind mounts are possible for a recording.
 */
export function normalizeMount(v: string): string {
  let src: string | undefined
  let dst: string | undefined
  let ro = false
  if (v.includes('=')) {
    const fields = new Map(v.split(',').map((kv) => { const i = kv.indexOf('='); return i < 0 ? [kv, ''] as const : [kv.slice(0, i), kv.slice(i + 1)] as const }))
    const type = fields.get('type') ?? 'bind'
    if (type !== 'bind') throw new UsageError(`--mount ${JSON.stringify(v)}: only type=bind is supported`)
    src = fields.get('src') ?? fields.get('source')
    dst = fields.get('dst') ?? fields.get('destination') ?? fields.get('target')
    ro = (fields.get('options') ?? '').split(/[:,]/).includes('ro') || fields.has('readonly') || fields.has('ro')
  } else {
    const parts = v.split(':')
    if (parts.length > 3 || (parts[2] !== undefined && parts[2] !== 'ro' && parts[2] !== 'rw')) throw new UsageError(`--mount ${JSON.stringify(v)}: expected SRC:DST[:ro|rw]`)
    ;[src, dst] = parts
    ro = parts[2] === 'ro'
  }
  if (!src || !src.startsWith('/') || !dst || !dst.startsWith('/')) throw new UsageError(`--mount ${JSON.stringify(v)}: needs an absolute source and destination (SRC:DST[:ro] or type=bind,src=/a,dst=/b)`)
  return `${src}:${dst}${ro ? ':ro' : ''}`
}

/** The workload overrides the flags ask for; the runner in src/optimize/ applies them. */
export async function overridesFromArgs(args: ParsedArgs): Promise<WorkloadOverrides> {
  const entrypoint = jsonArgv(flagString(args, 'entrypoint'), 'entrypoint')
  const cmdArgs = jsonArgv(flagString(args, 'args'), 'args')
  if (args.rest.length > 0 && (entrypoint !== undefined || cmdArgs !== undefined)) throw new UsageError('give the command either after -- or with --entrypoint/--args, not both')
  const env = [...(await readEnvFiles(flagList(args, 'env-file'))), ...flagList(args, 'env')]
  const mounts = flagList(args, 'mount').map(normalizeMount)
  const user = flagString(args, 'user')
  const workdir = flagString(args, 'workdir')
  const waitOnLine = flagString(args, 'wait-on-line')
  const netHost = flagBool(args, 'net-host')
  return {
    ...(args.rest.length > 0 ? { command: args.rest } : {}),
    ...(entrypoint !== undefined ? { entrypoint } : {}),
    ...(cmdArgs !== undefined ? { args: cmdArgs } : {}),
    ...(env.length > 0 ? { env } : {}),
    ...(user !== undefined ? { user } : {}),
    ...(workdir !== undefined ? { workdir } : {}),
    ...(mounts.length > 0 ? { mounts } : {}),
    ...(waitOnLine !== undefined ? { waitOnLine } : {}),
    ...(netHost ? { netHost } : {}),
  }
}

function periodMs(v: string | undefined): number {
  if (v === undefined) return DEFAULT_PERIOD_SECONDS * 1000
  if (!/^\d+(\.\d+)?$/.test(v) || Number(v) <= 0) throw new UsageError(`--period: expected a positive number of seconds, got ${JSON.stringify(v)}`)
  return Math.round(Number(v) * 1000)
}

export async function run(args: ParsedArgs): Promise<number> {
  const [srcArg, dstArg] = positionals(args, spec, 2) as [string, string]
  const src = parseLocation(srcArg, 'source')
  const dst = parseLocation(dstArg, 'destination')
  const period = periodMs(flagString(args, 'period'))
  const listPath = flagString(args, 'prioritized-from')
  const recordOut = flagString(args, 'record-out')
  const base = await convertOptionsFromArgs(args)
  const allPlatforms = flagBool(args, 'all-platforms')
  const overrides = await overridesFromArgs(args)

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
      overrides,
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
