/**
 * An emulated WAN link between the benchmark's clients (containerd, stargzd, curl) and a registry
 * that listens on the host's loopback. This kernel has no sch_netem, so bandwidth and delay come
 * from two different places:
 *
 *   client (host)                     host netns            ║ veth ║        netns stargzd-wan-…
 *   ─────────────                     ──────────            ║      ║        ───────────────────
 *   GET 127.0.0.1:P ──► host-proxy ── TCP to nsAddr:F ──tbf─╫─────►╫──► ns-relay (listens nsAddr:F)
 *                       (delays each                        ║      ║        │ connects to a unix
 *                        chunk RTT/2                        ║      ║        │ socket: filesystem
 *                        each way)  ◄──────────────────────╫◄─────╫─tbf◄───┘ sockets cross netns
 *                           ▲                               ║      ║
 *                           │ unix socket (tmp dir, 0700)   ║      ║
 *                       bridge ──► registry 127.0.0.1:R
 *
 * - Requests cross the veth host→ns, shaped by tbf on the host end's egress; responses (the blobs
 *   a pull downloads) cross ns→host, shaped by tbf on the namespace end's egress. Each byte crosses
 *   the veth exactly once, so the rate holds in each direction independently.
 * - The delay is added by host-proxy in user space: RTT/2 on each chunk in each direction (see
 *   delay-line.ts), and by default one extra RTT before a new connection's first request, which is
 *   what the TCP handshake costs on a real link.
 * - Nothing listens outside 127.0.0.1 in the host; the namespace's only address is the link-local
 *   /30 on our own veth; nothing leaves the machine.
 * - host-proxy and ns-relay are child processes (link-process.ts), so a benchmark that blocks its own
 *   event loop does not stall the link.
 *
 * What this does not emulate: TCP's own reaction to the delay (slow start and window growth over a
 * 20 ms RTT), because the TCP connections that carry the bytes see a loopback or veth RTT. A new
 * connection therefore reaches full rate after ~1 RTT instead of ~5–6; for 200 Mbit/s and 20 ms
 * that flatters a short transfer by up to ~100 ms. Loss is not emulated either.
 *
 * Teardown: `close()` (idempotent) stops both processes, deletes the veth (and with it both qdiscs)
 * and the namespace, and removes the temp dir. If the process exits first, an 'exit' handler does
 * the same synchronously; `installSignalCleanup()` extends that to SIGINT/SIGTERM/SIGHUP for entry
 * points that want it. The relay processes exit by themselves when their parent dies (stdin EOF),
 * and whatever a killed process left in the kernel is swept by the next createWanLink().
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { createNamespacePair, sweepStaleNamespaces, type NamespacePair } from './netns.js'
import type { LinkStats } from './link-process.js'

export type { LinkStats } from './link-process.js'

export interface WanLinkOptions {
  /** Megabits per second in each direction; default 200. Infinity: no shaping. */
  rateMbit?: number
  /** Round-trip time added by the link; default 20. */
  rttMs?: number
  /** Charge one RTT before a new connection's first bytes (TCP handshake); default true. */
  emulateHandshake?: boolean
  /** The real server, on the host's loopback. */
  upstream: { host: string; port: number }
}

export interface WanLink {
  /** Where clients connect: always 127.0.0.1. */
  host: string
  port: number
  /** `${host}:${port}`, e.g. for an image reference. */
  address: string
  rateMbit: number
  rttMs: number
  /** The kernel objects behind the link, for tests and for reports. */
  resources: { netns: string; hostIf: string; nsIf: string; hostAddr: string; nsAddr: string }
  /** Byte and connection counters as seen by the proxy. */
  stats(): Promise<LinkStats>
  /** Idempotent; also undoes a partly built link. */
  close(): Promise<void>
}

// ---- processes -------------------------------------------------------------------------------

interface LinkChild {
  proc: ChildProcess
  port: number
  request(cmd: object, event: string): Promise<Record<string, unknown>>
  stop(): Promise<void>
}

/** How to run link-process: its compiled .js, or its .ts through tsx when we run from source. */
function nodeCommand(): string[] {
  const self = import.meta.url
  const ext = self.endsWith('.ts') ? '.ts' : '.js'
  const script = fileURLToPath(new URL(`./link-process${ext}`, self))
  return ext === '.ts' ? [process.execPath, '--import', import.meta.resolve('tsx'), script] : [process.execPath, script]
}

function startChild(prefix: string[], args: string[], what: string): Promise<LinkChild> {
  const [cmd, ...rest] = [...prefix, ...nodeCommand(), ...args] as [string, ...string[]]
  // Without the test runner's or the caller's NODE_OPTIONS: the child needs none of their hooks.
  const env = { ...process.env }
  delete env.NODE_OPTIONS
  const proc = spawn(cmd, rest, { stdio: ['pipe', 'pipe', 'pipe'], env })
  let stderr = ''
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-4000) })
  const waiters = new Map<string, Array<(msg: Record<string, unknown>) => void>>()
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  createInterface({ input: proc.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    let msg: Record<string, unknown>
    try { msg = JSON.parse(line) as Record<string, unknown> } catch { return }
    const list = waiters.get(String(msg.event))
    list?.shift()?.(msg)
  })
  const waitFor = (event: string): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
    const onExit = (code: number | null, sig: string | null): void =>
      reject(new Error(`${what} exited (${code ?? sig}) before "${event}": ${stderr.trim()}`))
    proc.once('exit', onExit)
    const list = waiters.get(event) ?? []
    list.push((msg) => { proc.off('exit', onExit); resolve(msg) })
    waiters.set(event, list)
  })
  const child: Omit<LinkChild, 'port'> = {
    proc,
    request: (cmd, event) => {
      const p = waitFor(event)
      proc.stdin?.write(JSON.stringify(cmd) + '\n')
      return p
    },
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.stdin?.end() // the child exits when its stdin closes
      const t = setTimeout(() => proc.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(t)
    },
  }
  proc.stdin?.on('error', () => undefined) // EPIPE if it died; 'exit' reports that.
  return waitFor('listening').then(
    (msg) => ({ ...child, port: Number(msg.port) }),
    async (e: unknown) => { await child.stop(); throw e },
  )
}

// ---- exit safety net -------------------------------------------------------------------------

const openLinks = new Set<() => void>()

/** Tear down every open link now, synchronously. For 'exit' and signal handlers. */
export function closeAllWanLinksSync(): void {
  for (const f of [...openLinks]) f()
}

function track(closeSync: () => void): () => void {
  if (openLinks.size === 0) process.on('exit', closeAllWanLinksSync)
  openLinks.add(closeSync)
  return () => {
    openLinks.delete(closeSync)
    if (openLinks.size === 0) process.removeListener('exit', closeAllWanLinksSync)
  }
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

function onSignal(sig: NodeJS.Signals): void {
  closeAllWanLinksSync()
  for (const s of SIGNALS) process.removeListener(s, onSignal)
  // Re-raise: with our handler gone the default action (or whoever else listens) takes over.
  process.kill(process.pid, sig)
}

/**
 * For an entry point that does not handle signals itself (a bench script): on SIGINT, SIGTERM or
 * SIGHUP, tear down all links and then re-raise the signal. A library does not do this on its own
 * (the process's owner decides what a signal means), so without it a link left open by a process
 * killed by a signal stays until the next createWanLink() sweeps it (see sweepStaleNamespaces).
 */
export function installSignalCleanup(): void {
  for (const s of SIGNALS) if (!process.listeners(s).includes(onSignal)) process.on(s, onSignal)
}

// ---- the link --------------------------------------------------------------------------------

export async function createWanLink(opts: WanLinkOptions): Promise<WanLink> {
  const rateMbit = opts.rateMbit ?? 200
  const rttMs = opts.rttMs ?? 20
  if (!(rttMs >= 0) || !Number.isFinite(rttMs)) throw new RangeError(`rttMs must be finite and >= 0, got ${rttMs}`)
  if (!(rateMbit > 0)) throw new RangeError(`rateMbit must be > 0, got ${rateMbit}`)

  // What processes that died by a signal or SIGKILL left behind, before we add our own.
  await sweepStaleNamespaces()
  const dir = mkdtempSync(join(tmpdir(), 'stargzd-wan-'))
  const unixPath = join(dir, 'upstream.sock')
  let pair: NamespacePair | undefined
  const children: LinkChild[] = []

  const closeSync = (): void => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL')
    pair?.closeSync()
    rmSync(dir, { recursive: true, force: true })
  }
  const untrack = track(closeSync)
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      try {
        await Promise.all(children.map((c) => c.stop()))
        await pair?.close()
        await rm(dir, { recursive: true, force: true })
      } finally {
        closeSync() // a no-op when all went well; otherwise the blunt version
        untrack()
      }
    })()
    return closing
  }

  try {
    pair = await createNamespacePair({ rateMbit })
    const relay = await startChild(['ip', 'netns', 'exec', pair.netns], ['ns-relay', pair.nsAddr, unixPath], 'ns-relay')
    children.push(relay)
    const proxy = await startChild([], [
      'host-proxy', '127.0.0.1', `${pair.nsAddr}:${relay.port}`, unixPath,
      `${opts.upstream.host}:${opts.upstream.port}`, String(rttMs), opts.emulateHandshake === false ? '0' : '1',
    ], 'host-proxy')
    children.push(proxy)
    const { netns, hostIf, nsIf, hostAddr, nsAddr } = pair
    return {
      host: '127.0.0.1',
      port: proxy.port,
      address: `127.0.0.1:${proxy.port}`,
      rateMbit,
      rttMs,
      resources: { netns, hostIf, nsIf, hostAddr, nsAddr },
      stats: async () => {
        const { connections, bytesUp, bytesDown } = await proxy.request({ cmd: 'stats' }, 'stats')
        return { connections: Number(connections), bytesUp: Number(bytesUp), bytesDown: Number(bytesDown) }
      },
      close,
    }
  } catch (e) {
    await close()
    throw e
  }
}
