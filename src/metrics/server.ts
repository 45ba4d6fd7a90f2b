/**
 * The Prometheus endpoint: GET /metrics on `address` ("host:port", "[v6]:port", or a unix socket
 * path starting with "/"). Port 0 picks a free port; `address` on the result says which.
 */
import { createServer, type Server } from 'node:http'
import { rm } from 'node:fs/promises'
import type { Registry } from 'prom-client'

export interface MetricsServer {
  /** Where it listens ("127.0.0.1:9100" or the socket path). */
  address: string
  close(): Promise<void>
}

export function parseListenAddress(address: string): { path: string } | { host: string; port: number } {
  if (address.startsWith('/')) return { path: address }
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(address)
  if (!m) throw new Error(`invalid listen address ${JSON.stringify(address)}: expected host:port or /path/to.sock`)
  const port = Number(m[3])
  if (port > 65535) throw new Error(`invalid port in listen address ${JSON.stringify(address)}`)
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port }
}

export async function startMetricsServer(address: string, registry: Registry): Promise<MetricsServer> {
  const target = parseListenAddress(address)
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404).end('not found\n')
      return
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (e: unknown) => res.writeHead(500).end(`${e instanceof Error ? e.message : String(e)}\n`),
    )
  })
  if ('path' in target) await rm(target.path, { force: true })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    if ('path' in target) server.listen(target.path, resolve)
    else server.listen(target.port, target.host, resolve)
  })
  const a = server.address()
  const bound = typeof a === 'string' ? a : a ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : address
  let closing: Promise<void> | undefined
  return {
    address: bound,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
      return closing
    },
  }
}
