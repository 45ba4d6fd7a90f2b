/**
 * A network namespace joined to the host by a veth pair with a link-local /30 on it, and tbf shaping
 * on the egress of each end. Needs root and iproute2 (`ip`, `tc`).
 *
 * Every name carries a random id, and the namespace's name also the creating process's pid
 * (`stargzd-wan-<pid>-<id>`), so that `sweepStaleNamespaces()` can tell leftovers of a process that
 * died with SIGKILL from the live ones of a parallel test.
 */
import { execFile, execFileSync } from 'node:child_process'
import { randomBytes, randomInt } from 'node:crypto'
import { promisify } from 'node:util'

const execFileP = promisify(execFile)

export const NETNS_PREFIX = 'stargzd-wan-'
/** Host-side veth names: IFNAMSIZ allows 15 characters, so the prefix is short. */
export const HOST_IF_PREFIX = 'sgzw'
const NS_IF_PREFIX = 'sgzn'

export interface NamespacePair {
  netns: string
  hostIf: string
  nsIf: string
  /** Host end of the veth, e.g. 169.254.77.9 */
  hostAddr: string
  /** Namespace end of the veth, e.g. 169.254.77.10 */
  nsAddr: string
  /** Idempotent. */
  close(): Promise<void>
  /** Synchronous variant for process 'exit' handlers; idempotent. */
  closeSync(): void
}

export interface ShapeOptions {
  /** Megabits (10^6 bits) per second; Infinity leaves the device unshaped. */
  rateMbit: number
}

async function run(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { encoding: 'utf8' })
    return stdout
  } catch (e) {
    const err = e as Error & { stderr?: string }
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err.stderr ?? '').trim() || err.message}`, { cause: e })
  }
}

function runSyncQuiet(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' })
  } catch {
    // Already gone, or never made; a teardown does its best and goes on.
  }
}

/**
 * tc tbf arguments for `rateMbit`. burst: the bucket must hold at least one GSO packet (veth
 * hands tbf up to 64 KiB at once; bigger ones tbf has to segment) and one timer tick's worth of
 * tokens (rate / 250 Hz), else the shaper cannot reach its rate. latency bounds the queue: 50 ms at
 * 200 Mbit/s is 1.25 MB, plenty for TCP over a path with no delay of its own.
 */
export function tbfArgs(dev: string, opts: ShapeOptions): string[] {
  if (!(opts.rateMbit > 0) || !Number.isFinite(opts.rateMbit)) throw new RangeError(`rateMbit must be finite and > 0, got ${opts.rateMbit}`)
  const rateKbit = Math.max(8, Math.round(opts.rateMbit * 1000))
  const bytesPerSec = (rateKbit * 1000) / 8
  const burst = Math.max(128 * 1024, Math.ceil(bytesPerSec / 250))
  return ['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', String(burst), 'latency', '50ms']
}

/** A /30 in 169.254.64.0/18 (link-local, never routed off the machine) that no interface has. */
async function pickSubnet(): Promise<[string, string]> {
  const used = new Set<string>()
  for (const m of (await run('ip', ['-4', '-o', 'addr', 'show'])).matchAll(/inet (\d+\.\d+\.\d+)\.(\d+)\//g)) {
    used.add(`${m[1]}.${Math.floor(Number(m[2]) / 4)}`)
  }
  for (let i = 0; i < 100; i++) {
    const third = randomInt(64, 128)
    const quad = randomInt(0, 64)
    if (used.has(`169.254.${third}.${quad}`)) continue
    return [`169.254.${third}.${quad * 4 + 1}`, `169.254.${third}.${quad * 4 + 2}`]
  }
  throw new Error('no free /30 in 169.254.64.0/18')
}

export async function createNamespacePair(shape: ShapeOptions): Promise<NamespacePair> {
  const id = randomBytes(4).toString('hex')
  const netns = `${NETNS_PREFIX}${process.pid}-${id}`
  const hostIf = `${HOST_IF_PREFIX}${id}`
  const nsIf = `${NS_IF_PREFIX}${id}`
  let closed: Promise<void> | undefined
  let closedSync = false
  const closeSync = (): void => {
    if (closedSync) return
    closedSync = true
    // Deleting one end of a veth deletes the pair and both qdiscs; the namespace goes last.
    runSyncQuiet('ip', ['link', 'del', hostIf])
    runSyncQuiet('ip', ['netns', 'del', netns])
  }
  const close = (): Promise<void> => {
    closed ??= (async () => {
      if (closedSync) return
      closedSync = true
      await run('ip', ['link', 'del', hostIf]).catch(() => undefined)
      await run('ip', ['netns', 'del', netns]).catch(() => undefined)
    })()
    return closed
  }
  try {
    await run('ip', ['netns', 'add', netns])
    await run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', netns])
    let hostAddr = ''
    let nsAddr = ''
    for (let attempt = 0; ; attempt++) {
      ;[hostAddr, nsAddr] = await pickSubnet()
      try {
        await run('ip', ['addr', 'add', `${hostAddr}/30`, 'dev', hostIf])
        break
      } catch (e) {
        // A parallel link took the same /30 between the look and the add.
        if (attempt >= 5) throw e
      }
    }
    await run('ip', ['-n', netns, 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf])
    await run('ip', ['link', 'set', hostIf, 'up'])
    await run('ip', ['-n', netns, 'link', 'set', nsIf, 'up'])
    await run('ip', ['-n', netns, 'link', 'set', 'lo', 'up'])
    if (Number.isFinite(shape.rateMbit)) {
      await run('tc', tbfArgs(hostIf, shape))
      await run('ip', ['netns', 'exec', netns, 'tc', ...tbfArgs(nsIf, shape)])
    }
    return { netns, hostIf, nsIf, hostAddr, nsAddr, close, closeSync }
  } catch (e) {
    await close()
    throw e
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Remove namespaces (and their host veths) left behind by processes that no longer exist, e.g. a
 * benchmark killed with SIGKILL before its exit handler could run. Returns what it removed.
 */
export async function sweepStaleNamespaces(): Promise<string[]> {
  const removed: string[] = []
  // Links before namespaces: a namespace is made before its veth, so a veth seen here whose
  // namespace is not in the later list is truly orphaned, not one a parallel process is building.
  const links = await run('ip', ['-o', 'link', 'show'])
  const names = (await run('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '').filter(Boolean)
  const seen = new Set<string>()
  for (const name of names) {
    const m = new RegExp(`^${NETNS_PREFIX}(\\d+)-([0-9a-f]{8})$`).exec(name)
    if (!m) continue
    seen.add(m[2] as string)
    if (pidAlive(Number(m[1]))) continue
    for (const pid of (await run('ip', ['netns', 'pids', name]).catch(() => '')).split('\n').filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL') } catch { /* gone */ }
    }
    await run('ip', ['link', 'del', `${HOST_IF_PREFIX}${m[2]}`]).catch(() => undefined)
    await run('ip', ['netns', 'del', name]).catch(() => undefined)
    removed.push(name)
  }
  // A host veth whose namespace is already gone (the peer died with it, so this is rare).
  for (const m of links.matchAll(new RegExp(`^\\d+: (${HOST_IF_PREFIX}([0-9a-f]{8}))[@:]`, 'gm'))) {
    if (seen.has(m[2] as string)) continue
    await run('ip', ['link', 'del', m[1] as string]).catch(() => undefined)
    removed.push(m[1] as string)
  }
  return removed
}
