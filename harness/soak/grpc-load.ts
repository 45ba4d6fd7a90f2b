/**
 * gRPC and store under load (issue #17): the real daemon on a unix socket, several grpc-js clients
 * firing chains of Prepare → Commit → View → Remove plus a List each, all chains at once, and a
 * kill -9 of the daemon once half the calls have answered, then a restart on the same root.
 *
 * Afterwards, for every chain, the store must hold exactly the state after its last call that
 * answered OK, or — for the one call the kill interrupted — the state after that call: a call
 * took effect or it did not, never half. The snapshot dirs must match the store's records and
 * nothing may stay mounted under the root. Latency per method from the calls that answered OK.
 */
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { snapshotsClientConstructor } from '../../src/grpc/proto.js'
import { mountsUnder } from '../containerd.js'
import { daemonScratch, type StargzdProcess } from '../stargzd.js'

export type Method = 'Prepare' | 'Commit' | 'View' | 'Remove' | 'List'

export interface GrpcLoadOptions { chains: number; clients: number; killAfterFraction: number; log?: (l: string) => void }

export interface GrpcLoadResult {
  /** Calls sent; a chain stops at its first failed call, so fewer than chains × 5 after a kill. */
  issued: number
  calls: number
  ok: number
  failed: number
  /** Chains whose store state matched neither "did not happen" nor "took effect". */
  inconsistent: string[]
  storeRecords: number
  snapshotDirs: number
  mountsUnderRoot: number
  latency: Record<Method, { n: number; p50: number; p99: number }>
  killedAfterCalls: number
}

interface Info { name: string; parent: string; kind: string }
type Client = grpc.Client & Record<string, (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: unknown) => void) => void> & {
  List(req: unknown, md: grpc.Metadata): grpc.ClientReadableStream<{ info: Info[] }>
}

const NS = 'soakload'

function md(): grpc.Metadata {
  const m = new grpc.Metadata()
  m.set('containerd-namespace', NS)
  return m
}

function unary(c: Client, method: string, req: object): Promise<void> {
  return new Promise((resolve, reject) => {
    c[method]?.({ snapshotter: 'stargz', ...req }, md(), { deadline: Date.now() + 60_000 }, (e) => (e ? reject(e) : resolve()))
  })
}

function list(c: Client): Promise<Info[]> {
  return new Promise((resolve, reject) => {
    const out: Info[] = []
    const s = c.List({ snapshotter: 'stargz' }, md())
    s.on('data', (m: { info: Info[] }) => out.push(...m.info))
    s.on('end', () => resolve(out))
    s.on('error', reject)
  })
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] as number
}

/** The chain's snapshots (name → kind) after its first `steps` calls took effect. */
function expectedAfter(j: number, steps: number): Map<string, string> {
  const m = new Map<string, string>()
  if (steps >= 1) m.set(`a-${j}`, 'ACTIVE')
  if (steps >= 2) { m.delete(`a-${j}`); m.set(`c-${j}`, 'COMMITTED') }
  if (steps >= 3) m.set(`v-${j}`, 'VIEW')
  if (steps >= 4) m.delete(`v-${j}`)
  return m
}

const same = (a: Map<string, string>, b: Map<string, string>): boolean => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v)

interface Teardownable { teardown(fn: () => unknown): void }

export async function runGrpcLoad(t: Teardownable, opts: GrpcLoadOptions): Promise<GrpcLoadResult> {
  const log = opts.log ?? (() => undefined)
  const scratch = await daemonScratch(t, 'sgd-grpcload-')
  let sgd: StargzdProcess = await scratch.start()
  const Ctor = snapshotsClientConstructor()
  const clients = Array.from({ length: opts.clients }, () => new Ctor(`unix:${scratch.sock}`, grpc.credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 500 }) as unknown as Client)
  t.teardown(() => { for (const c of clients) c.close() })

  const lat: Record<Method, number[]> = { Prepare: [], Commit: [], View: [], Remove: [], List: [] }
  const total = opts.chains * 5
  let answered = 0
  let issued = 0
  let ok = 0
  let killedAfterCalls = 0
  let restart: Promise<void> | undefined
  /** Per chain: calls that answered OK, and whether the next one is in doubt (errored). */
  const progress = Array.from({ length: opts.chains }, () => ({ done: 0, inDoubt: false }))

  const timed = async (m: Method, f: () => Promise<unknown>): Promise<boolean> => {
    const t0 = performance.now()
    issued++
    try {
      await f()
      lat[m].push(performance.now() - t0)
      ok++
      return true
    } catch {
      return false
    } finally {
      answered++
      if (!restart && answered >= total * opts.killAfterFraction) {
        killedAfterCalls = answered
        restart = (async () => {
          await sgd.kill9()
          log(`kill -9 after ${answered} answered calls`)
          sgd = await scratch.start()
        })()
      }
    }
  }

  await Promise.all(progress.map(async (p, j) => {
    const c = clients[j % clients.length] as Client
    const steps: [Method, object][] = [
      ['Prepare', { key: `a-${j}`, parent: '' }],
      ['Commit', { name: `c-${j}`, key: `a-${j}` }],
      ['View', { key: `v-${j}`, parent: `c-${j}` }],
      ['Remove', { key: `v-${j}` }],
    ]
    for (const [m, req] of steps) {
      if (!(await timed(m, () => unary(c, m, req)))) { p.inDoubt = true; break }
      p.done++
    }
    await timed('List', () => list(c))
  }))
  if (restart) await restart

  // A fresh client: the old ones may still be backing off their reconnect.
  const fresh = new Ctor(`unix:${scratch.sock}`, grpc.credentials.createInsecure()) as unknown as Client
  t.teardown(() => fresh.close())
  let infos: Info[] = []
  for (let attempt = 0; ; attempt++) {
    try { infos = await list(fresh); break } catch (e) {
      if (attempt >= 20) throw e
      await new Promise((r) => setTimeout(r, 250))
    }
  }
  const byChain = new Map<number, Map<string, string>>()
  for (const i of infos) {
    const m = /^[avc]-(\d+)$/.exec(i.name)
    if (!m) continue
    const j = Number(m[1])
    const s = byChain.get(j) ?? new Map<string, string>()
    s.set(i.name, i.kind)
    byChain.set(j, s)
  }
  const inconsistent: string[] = []
  progress.forEach((p, j) => {
    const got = byChain.get(j) ?? new Map<string, string>()
    const options = [expectedAfter(j, p.done), ...(p.inDoubt ? [expectedAfter(j, p.done + 1)] : [])]
    if (!options.some((o) => same(o, got))) inconsistent.push(`chain ${j}: ${p.done} OK${p.inDoubt ? ' + 1 in doubt' : ''}, store has ${JSON.stringify([...got])}`)
  })
  // After a restart the daemon sweeps orphan dirs (a crash between rename and commit) in the
  // background, once it serves (issue #11: readiness before slow work). Give that sweep up to 30 s;
  // a dir that is still there then is a leak, and the caller's comparison reports it.
  const listDirs = async (): Promise<number> => (await readdir(join(scratch.root, 'snapshots')).catch(() => [] as string[])).length
  let snapshotDirs = await listDirs()
  for (let waited = 0; snapshotDirs !== infos.length && waited < 30_000; waited += 250) {
    await new Promise((r) => setTimeout(r, 250))
    snapshotDirs = await listDirs()
  }
  const mountsUnderRoot = (await mountsUnder(scratch.root)).length
  const latency = Object.fromEntries(Object.entries(lat).map(([m, xs]) => [m, { n: xs.length, p50: pct(xs, 0.5), p99: pct(xs, 0.99) }])) as GrpcLoadResult['latency']
  await sgd.close()
  return { issued, calls: answered, ok, failed: answered - ok, inconsistent, storeRecords: infos.length, snapshotDirs, mountsUnderRoot, latency, killedAfterCalls }
}
