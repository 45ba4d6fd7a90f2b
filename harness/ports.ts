/**
 * Ports without races. There is no `freePort()` here on purpose: "bind port 0, read it, release
 * it, hand the number to someone" lets any other process on the machine take the port in between
 * (two test files in parallel are enough). Instead:
 *  - in-process servers listen on port 0 and report what they got (listenLocal);
 *  - child processes are configured with port 0 and we read the port they bound from their own
 *    output (docker-registry: src/bench/registry.ts; stargzd's metrics endpoint: metricsAddress);
 *  - a test that needs a port where connections fail holds one that drops them (droppingPort).
 */
import { createServer, type Server } from 'node:net'

/** Listen on 127.0.0.1:0 and return the port the kernel chose. */
export function listenLocal(server: Pick<Server, 'listen' | 'address' | 'once' | 'off'>): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      const a = server.address()
      if (a === null || typeof a === 'string') reject(new Error('not a TCP server'))
      else resolve(a.port)
    })
  })
}

export interface DroppingPort {
  port: number
  /** "127.0.0.1:PORT" */
  address: string
  /** Connections accepted (and dropped) so far. */
  connections: number
  close(): Promise<void>
}

/**
 * A port held for the whole test on which every connection is reset at once: an unreachable
 * peer that no other process can turn into a reachable one.
 */
export async function droppingPort(): Promise<DroppingPort> {
  const server = createServer((s) => { out.connections++; s.resetAndDestroy() })
  const port = await listenLocal(server)
  const out: DroppingPort = {
    port,
    address: `127.0.0.1:${port}`,
    connections: 0,
    close: () => new Promise((r) => server.close(() => r())),
  }
  return out
}

/** The address stargzd's metrics endpoint bound (configure `metrics_address = "127.0.0.1:0"`). */
export function metricsAddress(logs: ReadonlyArray<{ msg?: string; address?: unknown }>): string | undefined {
  const line = logs.find((l) => l.msg === 'metrics endpoint listening')
  return typeof line?.address === 'string' ? line.address : undefined
}
