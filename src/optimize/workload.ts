/**
 * Running the workload of `stargz optimize` in an isolated rootfs, the way a container would
 * start: the image config's env, user, working dir and entrypoint + cmd, unless overridden.
 *
 *   unshare --mount --propagation private            a private mount namespace, so that
 *     sh -c 'mount --rbind /dev ROOT/dev; exec …'     the /dev bind never shows on the host
 *       unshare --pid --fork --kill-child             PID 1 of a new PID namespace: killing our
 *               --root ROOT --wd DIR                  child kills every process of the workload
 *               --mount-proc=/proc --setuid/--setgid
 *         CMD ARGS…
 *
 * Only the command itself runs inside the rootfs: the helper shell and both unshares are the
 * host's, so the only files opened in the image are the workload's own.
 */
import { spawn } from 'node:child_process'
import { constants } from 'node:fs'
import { access, mkdir, readFile } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { FailedPreconditionError, InvalidArgumentError } from '../errors.js'

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export interface Workload {
  argv: string[]
  env: string[]
  uid: number
  gid: number
  cwd: string
}

export interface WorkloadOverrides {
  /** Replaces entrypoint + cmd. */
  command?: string[]
  /** KEY=VALUE, added to (and overriding) the image's. */
  env?: string[]
  user?: string
  workdir?: string
  /** `--entrypoint`: replaces the image's entrypoint (JSON array on the command line). */
  entrypoint?: string[]
  /** `--args`: replaces the image's cmd. */
  args?: string[]
  /** Host directories for the workload: "SRC:DST[:ro|rw]" (rw by default, as `docker -v`). */
  mounts?: string[]
  netHost?: boolean
  /** `--wait-on-line`: stop recording when the workload prints a line containing this. */
  waitOnLine?: string
}

interface ImageRunConfig { Env?: unknown; User?: unknown; WorkingDir?: unknown; Entrypoint?: unknown; Cmd?: unknown }

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
}

function mergeEnv(base: string[], extra: string[]): string[] {
  const out = new Map<string, string>()
  for (const kv of [...base, ...extra]) {
    const eq = kv.indexOf('=')
    if (eq <= 0) throw new InvalidArgumentError(`environment entry ${JSON.stringify(kv)} is not KEY=VALUE`)
    out.set(kv.slice(0, eq), kv)
  }
  if (!out.has('PATH')) out.set('PATH', `PATH=${DEFAULT_PATH}`)
  return [...out.values()]
}

/** uid/gid of `name` from the rootfs's /etc/passwd and /etc/group (as runc does). */
async function lookupIds(rootfs: string, user: string): Promise<{ uid: number; gid: number }> {
  const [u = '', g] = user.split(':', 2)
  const table = async (file: string): Promise<string[][]> => {
    try { return (await readFile(join(rootfs, file), 'utf8')).split('\n').map((l) => l.split(':')) } catch { return [] }
  }
  let uid: number
  let gid = 0
  if (/^\d+$/.test(u)) {
    uid = Number(u)
    const row = (await table('etc/passwd')).find((r) => r[2] === u)
    if (row) gid = Number(row[3])
  } else {
    const row = (await table('etc/passwd')).find((r) => r[0] === u)
    if (!row) throw new InvalidArgumentError(`user ${JSON.stringify(u)} is not in the image's /etc/passwd`)
    uid = Number(row[2])
    gid = Number(row[3])
  }
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g)
    else {
      const row = (await table('etc/group')).find((r) => r[0] === g)
      if (!row) throw new InvalidArgumentError(`group ${JSON.stringify(g)} is not in the image's /etc/group`)
      gid = Number(row[2])
    }
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid)) throw new InvalidArgumentError(`user ${JSON.stringify(user)} does not resolve to numeric ids`)
  return { uid, gid }
}

/** The workload from the image config (`config` object of the image config JSON) and overrides. */
export async function workloadFor(rootfs: string, imageConfig: Record<string, unknown>, o: WorkloadOverrides): Promise<Workload> {
  const c = (imageConfig.config ?? {}) as ImageRunConfig
  // As docker run: --entrypoint resets the image's cmd; --args replaces only the cmd.
  const argv = o.command && o.command.length > 0 ? o.command : [...(o.entrypoint ?? strings(c.Entrypoint)), ...(o.args ?? (o.entrypoint ? [] : strings(c.Cmd)))]
  if (argv.length === 0) throw new InvalidArgumentError('the image has no entrypoint or cmd; give the command after --')
  const env = mergeEnv(strings(c.Env), o.env ?? [])
  const user = o.user ?? (typeof c.User === 'string' ? c.User : '')
  // containerd reads /etc/passwd and /etc/group from the rootfs whenever it builds a container's
  // spec (user lookup, additional GIDs), so both are on every container's start-up path: touch
  // them first so a recording puts them in the prefetched range.
  for (const f of ['etc/passwd', 'etc/group']) await readFile(join(rootfs, f)).catch(() => undefined)
  const ids = user === '' ? { uid: 0, gid: 0 } : await lookupIds(rootfs, user)
  const wd = o.workdir ?? (typeof c.WorkingDir === 'string' && c.WorkingDir !== '' ? c.WorkingDir : '/')
  if (!wd.startsWith('/')) throw new InvalidArgumentError(`working directory ${JSON.stringify(wd)} is not absolute`)
  return { argv, env, uid: ids.uid, gid: ids.gid, cwd: posix.normalize(wd) }
}

export interface RunResult {
  exitCode: number | null
  signal: NodeJS.Signals | null
  /** The period ran out and the workload was killed. */
  timedOut: boolean
}

/** Host tools by absolute path: the helper runs with the image's environment (PATH included). */
async function hostBinary(name: string): Promise<string> {
  for (const d of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    try { await access(join(d, name), constants.X_OK); return join(d, name) } catch { /* next */ }
  }
  throw new FailedPreconditionError(`${name} (util-linux) is needed to run the workload but is not installed`)
}

const HELPER = [
  'set -e',
  'mount=$1; unshare=$2; root=$3; wd=$4; uid=$5; gid=$6; shift 6',
  '"$mount" --rbind /dev "$root/dev"',
  'exec "$unshare" --pid --fork --kill-child --root="$root" --wd="$wd" --mount-proc=/proc --setgid "$gid" --setuid "$uid" -- "$@"',
].join('\n')

/**
 * Runs `w` in `rootfs` (which must be writable: /proc and /dev are created if missing) for at
 * most `periodMs`, passing its output to `output`.
 */
export async function runWorkload(rootfs: string, w: Workload, opts: { periodMs: number; output?: NodeJS.WritableStream; signal?: AbortSignal }): Promise<RunResult> {
  for (const d of ['proc', 'dev']) await mkdir(join(rootfs, d), { recursive: true })
  // mkdir the working dir as runc does, so a missing one is not an instant failure.
  await mkdir(join(rootfs, w.cwd), { recursive: true }).catch(() => undefined)
  const env: Record<string, string> = {}
  for (const kv of w.env) { const eq = kv.indexOf('='); env[kv.slice(0, eq)] = kv.slice(eq + 1) }
  const [mount, unshare] = await Promise.all([hostBinary('mount'), hostBinary('unshare')])
  // The environment passes through the host helpers unchanged to the workload; the command is
  // looked up on the image's PATH inside the new root.
  const child = spawn(unshare, ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', HELPER, 'sh', mount, unshare, rootfs, w.cwd, String(w.uid), String(w.gid), ...w.argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  })
  if (opts.output) {
    child.stdout.pipe(opts.output, { end: false })
    child.stderr.pipe(opts.output, { end: false })
  } else {
    child.stdout.resume()
    child.stderr.resume()
  }
  let timedOut = false
  const kill = (): void => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }
  const timer = setTimeout(() => { timedOut = true; kill() }, opts.periodMs)
  opts.signal?.addEventListener('abort', kill, { once: true })
  try {
    return await new Promise<RunResult>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (code, signal) => resolve({ exitCode: code, signal, timedOut }))
    })
  } finally {
    clearTimeout(timer)
    opts.signal?.removeEventListener('abort', kill)
  }
}
