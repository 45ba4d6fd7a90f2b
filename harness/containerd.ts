/**
 * Real containerd (Debian's 1.6) for tests, private to one test: the same instance the benchmark
 * harness starts (src/bench/containerd.ts) — own dir, sockets, config, random namespace, CRI off —
 * optionally with `[proxy_plugins.stargz]` pointing at a stargzd socket. `close()` kills its tasks
 * and shims, unmounts what is left under its dir and removes it; safe to call twice.
 */
import { startBenchContainerd, type BenchContainerd } from '../src/bench/containerd.js'

export { mountsUnder, unmountUnder } from '../src/bench/proc.js'

export interface ProxyPlugin {
  address: string
  type?: 'snapshot'
}

export interface ContainerdOptions {
  /** Only a snapshot plugin named "stargz" is supported (what stargzd registers as). */
  proxyPlugins?: Record<string, ProxyPlugin>
}

export interface Containerd extends BenchContainerd {
  /** Arguments for `ctr run` that keep its fifos inside this instance's dir. */
  runArgs(): string[]
}

export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  const plugins = Object.entries(opts.proxyPlugins ?? {})
  for (const [name, p] of plugins) {
    if (name !== 'stargz' || (p.type ?? 'snapshot') !== 'snapshot') throw new Error(`unsupported proxy plugin ${name} (${p.type ?? 'snapshot'}): only a "stargz" snapshotter`)
  }
  const sock = opts.proxyPlugins?.stargz?.address
  const c = await startBenchContainerd(sock === undefined ? {} : { stargzSocket: sock })
  return { ...c, runArgs: () => ['--fifo-dir', c.fifoDir] }
}
