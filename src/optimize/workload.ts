/**
 * Running the workload of `stargz optimize` as a real container: runc with an OCI spec we write
 * (oci-spec.ts), the image's lazily mounted rootfs as its root. The image config's env, user,
 * working dir and entrypoint + cmd apply unless overridden; every one of them ends up as a field of
 * the spec and runc applies it inside the container. Nothing is created or followed on the host
 * through the rootfs: the working directory and mount destinations are made by runc within the
 * rootfs, and the only host-side reads of the image (/etc/passwd and /etc/group, for user names)
 * resolve symlinks relative to the rootfs (in-root.ts).
 *
 *   runc --root STATE/runc run --bundle STATE/bundle-ID ID     (config.json in the bundle)
 *
 * The file accesses are still recorded by our FUSE layer under the rootfs, as before.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { access, mkdir, rm, writeFile } from 'node:fs/promises'
import { dirname, isAbsolute, join, posix, resolve } from 'node:path'
import { FailedPreconditionError, InvalidArgumentError } from '../errors.js'
import { readInRoot } from './in-root.js'
import { buildSpec, type BindMount } from './oci-spec.js'

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export interface Workload {
  argv: string[]
  env: string[]
  uid: number
  gid: number
  /** Supplementary groups of the user, from the image's /etc/group. */
  additionalGids: number[]
  cwd: string
  mounts: BindMount[]
  /** Share the host's network namespace instead of a loopback-only one. */
  netHost: boolean
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

async function table(rootfs: string, file: string): Promise<string[][]> {
  const data = await readInRoot(rootfs, file)
  return data === undefined ? [] : data.toString('utf8').split('\n').map((l) => l.split(':'))
}

/**
 * uid/gid of `user` ("name", "uid", "name:group", "uid:gid") from the image's /etc/passwd and
 * /etc/group, read inside the rootfs (never following a symlink out of it), as containerd does.
 */
async function lookupIds(rootfs: string, user: string): Promise<{ uid: number; gid: number }> {
  const [u = '', g] = user.split(':', 2)
  let uid: number
  let gid = 0
  if (/^\d+$/.test(u)) {
    uid = Number(u)
    const row = (await table(rootfs, 'etc/passwd')).find((r) => r[2] === u)
    if (row) gid = Number(row[3])
  } else {
    const row = (await table(rootfs, 'etc/passwd')).find((r) => r[0] === u)
    if (!row) throw new InvalidArgumentError(`user ${JSON.stringify(u)} is not in the image's /etc/passwd`)
    uid = Number(row[2])
    gid = Number(row[3])
  }
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g)
    else {
      const row = (await table(rootfs, 'etc/group')).find((r) => r[0] === g)
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
  for (const f of ['etc/passwd', 'etc/group']) await readInRoot(rootfs, f).catch(() => undefined)
  const ids = user === '' ? { uid: 0, gid: 0 } : await lookupIds(rootfs, user)
  const wd = o.workdir ?? (typeof c.WorkingDir === 'string' && c.WorkingDir !== '' ? c.WorkingDir : '/')
  if (!wd.startsWith('/')) throw new InvalidArgumentError(`working directory ${JSON.stringify(wd)} is not absolute`)
  const additionalGids = ids.uid === 0 && user === '' ? [] : await supplementaryGids(rootfs, user.split(':', 1)[0] ?? '', ids.gid)
  return {
    argv, env, uid: ids.uid, gid: ids.gid, additionalGids,
    // Kept as the image says (normalised only): runc resolves it inside the rootfs.
    cwd: posix.normalize(wd),
    mounts: (o.mounts ?? []).map(parseMount),
    netHost: o.netHost ?? false,
  }
}

/** Groups of /etc/group that list the user by name (what containerd adds as additionalGids). */
async function supplementaryGids(rootfs: string, name: string, primary: number): Promise<number[]> {
  if (name === '' || /^\d+$/.test(name)) return []
  const out: number[] = []
  for (const row of await table(rootfs, 'etc/group')) {
    const gid = Number(row[2])
    if (!Number.isSafeInteger(gid) || gid === primary) continue
    if ((row[3] ?? '').split(',').includes(name)) out.push(gid)
  }
  return out
}

/** "SRC:DST[:ro|rw]" → a bind mount; SRC is a host path, DST a path inside the container. */
export function parseMount(spec: string): BindMount {
  const parts = spec.split(':')
  const [src, dst, mode = 'rw'] = parts
  if (parts.length < 2 || parts.length > 3 || !src || !dst || (mode !== 'ro' && mode !== 'rw')) {
    throw new InvalidArgumentError(`mount ${JSON.stringify(spec)} is not SRC:DST[:ro|rw]`)
  }
  if (!isAbsolute(dst)) throw new InvalidArgumentError(`mount destination ${JSON.stringify(dst)} is not absolute`)
  return { source: resolve(src), destination: posix.normalize(dst), readonly: mode === 'ro' }
}

export interface RunResult {
  exitCode: number | null
  signal: NodeJS.Signals | null
  /** The period ran out and the workload was killed. */
  timedOut: boolean
}

async function runcBinary(): Promise<string> {
  for (const d of ['/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    try { await access(join(d, 'runc'), constants.X_OK); return join(d, 'runc') } catch { /* next */ }
  }
  throw new FailedPreconditionError('runc is needed to run the workload (apt-get install runc) but is not installed')
}

/** Run runc to completion, collecting its stderr (for the error message). */
function runc(bin: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    child.once('error', reject)
    child.once('close', (code) => resolveRun({ code, stderr }))
  })
}

/**
 * Runs `w` in `rootfs` (our writable overlay of the image) as a runc container for at most
 * `periodMs`, passing its output to `output`. The bundle and runc's state live next to the
 * rootfs, in the caller's state dir, and are removed afterwards.
 */
export async function runWorkload(rootfs: string, w: Workload, opts: { periodMs: number; output?: NodeJS.WritableStream; signal?: AbortSignal }): Promise<RunResult> {
  const bin = await runcBinary()
  const id = `stargz-optimize-${process.pid}-${randomBytes(4).toString('hex')}`
  const state = dirname(rootfs)
  const runcRoot = join(state, 'runc')
  const bundle = join(state, `bundle-${id}`)
  await mkdir(runcRoot, { recursive: true, mode: 0o700 })
  await mkdir(bundle, { mode: 0o700 })
  try {
    const spec = buildSpec({ rootfs: resolve(rootfs), argv: w.argv, env: w.env, uid: w.uid, gid: w.gid, additionalGids: w.additionalGids, cwd: w.cwd, mounts: w.mounts, netHost: w.netHost })
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec, null, 2), { mode: 0o600 })
    // runc in the foreground: the container's stdio are our pipes (terminal: false).
    const child = spawn(bin, ['--root', runcRoot, 'run', '--bundle', bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] })
    if (opts.output) {
      child.stdout.pipe(opts.output, { end: false })
      child.stderr.pipe(opts.output, { end: false })
    } else {
      child.stdout.resume()
      child.stderr.resume()
    }
    let timedOut = false
    let killing: Promise<unknown> | undefined
    // SIGKILL to every process of the container (runc kill --all), not just runc itself. While runc
    // is still creating the container, kill finds nothing: try again until runc has exited.
    const running = (): boolean => child.exitCode === null && child.signalCode === null
    const kill = (): void => {
      killing ??= (async () => {
        while (running()) {
          await runc(bin, ['--root', runcRoot, 'kill', '--all', id, 'KILL']).catch(() => undefined)
          await new Promise((r) => setTimeout(r, 200))
        }
      })()
    }
    const timer = setTimeout(() => { timedOut = true; kill() }, opts.periodMs)
    opts.signal?.addEventListener('abort', kill, { once: true })
    try {
      const result = await new Promise<RunResult>((resolveRun, reject) => {
        child.once('error', reject)
        child.once('close', (code, signal) => resolveRun({ exitCode: code, signal, timedOut }))
      })
      // runc reports a container killed by SIGKILL as exit 137.
      if (timedOut && result.exitCode === 137) return { exitCode: null, signal: 'SIGKILL', timedOut }
      return result
    } finally {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', kill)
      await killing
    }
  } finally {
    await runc(bin, ['--root', runcRoot, 'delete', '--force', id]).catch(() => undefined)
    await rm(bundle, { recursive: true, force: true })
    await rm(runcRoot, { recursive: true, force: true }).catch(() => undefined)
  }
}
