/**
 * The two relay processes of an emulated WAN link (see wan-link.ts for the picture). Run as:
 *
 *   node link-process.js ns-relay   <listenHost> <unixPath>
 *   node link-process.js host-proxy <listenHost> <targetHost:port> <unixPath> <upstreamHost:port> <rttMs> <handshake 0|1>
 *
 * They run in processes of their own, not in the benchmark's, so that a harness which blocks its
 * event loop (execFileSync of `ctr`, a big synchronous hash) cannot stall the link it is measuring.
 *
 * Protocol with the parent, one JSON object a line: the process prints
 * `{"event":"listening","port":N}` once it accepts connections; it answers a `{"cmd":"stats"}` line
 * on stdin with `{"event":"stats",...}`; it exits when stdin closes, so it dies with its parent
 * even when the parent is killed with SIGKILL.
 */
import { createServer, connect, type Socket, type Server } from 'node:net'
import { rmSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { DelayLine } from './delay-line.js'

export interface LinkStats {
  /** Client connections accepted so far. */
  connections: number
  /** Bytes the clients sent towards the upstream (requests). */
  bytesUp: number
  /** Bytes delivered to the clients from the upstream (responses). */
  bytesDown: number
}

const stats: LinkStats = { connections: 0, bytesUp: 0, bytesDown: 0 }

function say(msg: object): void {
  process.stdout.write(JSON.stringify(msg) + '\n')
}

function parseHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':')
  const port = Number(s.slice(i + 1))
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`not host:port: ${s}`)
  return { host: s.slice(0, i), port }
}

/**
 * An error on either socket (a reset, a refused connect) destroys both. A clean close does not: the
 * data and the FIN still queued for the other side must be delivered first, and ending it is then
 * the pipe's or the DelayLine's job; destroy() here would throw away writes not yet flushed.
 */
function bind(a: Socket, b: Socket, onClose?: () => void): void {
  let done = false
  const kill = (): void => {
    if (done) return
    done = true
    a.destroy()
    b.destroy()
    onClose?.()
  }
  a.on('error', kill)
  b.on('error', kill)
  a.on('close', (hadError) => { if (hadError) kill() })
  b.on('close', (hadError) => { if (hadError) kill() })
}

/** Plain byte relay: Node's pipe() keeps order and handles back-pressure and half-close. */
function relay(client: Socket, upstream: Socket): void {
  client.setNoDelay(true)
  upstream.setNoDelay(true)
  client.pipe(upstream)
  upstream.pipe(client)
  bind(client, upstream)
}

function listen(server: Server, opts: { host?: string; port?: number; path?: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts, () => {
      server.off('error', reject)
      const a = server.address()
      resolve(typeof a === 'object' && a ? a.port : 0)
    })
  })
}

/** Inside the namespace: TCP from the veth → the host's unix socket (unix sockets cross netns). */
async function nsRelay(listenHost: string, unixPath: string): Promise<void> {
  const server = createServer({ allowHalfOpen: true }, (c) => {
    stats.connections++
    relay(c, connect({ path: unixPath, allowHalfOpen: true }))
  })
  say({ event: 'listening', port: await listen(server, { host: listenHost, port: 0 }) })
}

/**
 * On the host: clients → 127.0.0.1:P → (delay RTT/2) → TCP over the shaped veth → ns-relay; and the
 * unix socket that ns-relay dials → the real upstream on the host's loopback.
 */
async function hostProxy(
  listenHost: string, target: { host: string; port: number }, unixPath: string,
  upstream: { host: string; port: number }, rttMs: number, handshake: boolean,
): Promise<void> {
  const oneWay = rttMs / 2
  rmSync(unixPath, { force: true })
  const bridge = createServer({ allowHalfOpen: true }, (c) => {
    relay(c, connect({ host: upstream.host, port: upstream.port, allowHalfOpen: true }))
  })
  await listen(bridge, { path: unixPath })

  const proxy = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    stats.connections++
    // A real client pays one RTT for SYN / SYN-ACK before its first byte can leave; here connect()
    // to 127.0.0.1 returned at once, so hold the client's first bytes back by that RTT instead.
    const notBefore = handshake ? performance.now() + rttMs : 0
    const remote = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true })
    const up = new DelayLine(client, remote, { delayMs: oneWay, notBefore, onDeliver: (n) => { stats.bytesUp += n } })
    const down = new DelayLine(remote, client, { delayMs: oneWay, onDeliver: (n) => { stats.bytesDown += n } })
    bind(client, remote, () => {
      up.close()
      down.close()
    })
  })
  say({ event: 'listening', port: await listen(proxy, { host: listenHost, port: 0 }) })
}

function main(argv: string[]): Promise<void> {
  const [role, ...args] = argv
  if (role === 'ns-relay' && args.length === 2) return nsRelay(args[0] as string, args[1] as string)
  if (role === 'host-proxy' && args.length === 6) {
    const [listenHost, target, unixPath, upstream, rtt, handshake] = args as [string, string, string, string, string, string]
    const rttMs = Number(rtt)
    if (!(rttMs >= 0)) throw new Error(`bad rttMs: ${rtt}`)
    return hostProxy(listenHost, parseHostPort(target), unixPath, parseHostPort(upstream), rttMs, handshake === '1')
  }
  throw new Error(`usage: link-process.js ns-relay HOST UNIX | host-proxy HOST TARGET UNIX UPSTREAM RTT HANDSHAKE (got ${argv.join(' ')})`)
}

const rl = createInterface({ input: process.stdin })
rl.on('line', (line) => {
  try {
    const msg = JSON.parse(line) as { cmd?: string }
    if (msg.cmd === 'stats') say({ event: 'stats', ...stats })
  } catch {
    // Not ours; ignore.
  }
})
rl.on('close', () => process.exit(0))
main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`link-process: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`)
  process.exit(1)
})
