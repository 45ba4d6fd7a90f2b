/**
 * The soak's fault schedule. One background fault runs all the time (about 10% of blob GETs are
 * reset mid-body: the fault proxy resets "the next N", so every tick N grows by a tenth of the
 * blob GETs seen since the last tick). The others come one at a time in fixed slots, each with a
 * start and an end marker for the timeline: 5xx/429 bursts, stalled and trickled bodies, hostile
 * bodies (Range ignored, a lying Content-Length), expiring redirects, a registry outage, the cache
 * filesystem full, kill -9 of the daemon.
 */
import { open, rm, statfs } from 'node:fs/promises'
import type { FaultProxy } from '../fault-proxy.js'

export type FaultKind = 'burst-503' | 'burst-429' | 'stall' | 'hostile' | 'redirect-expiry' | 'outage' | 'disk-full' | 'kill9' | 'kill9-fused'

export interface FaultMarker {
  kind: FaultKind; startMs: number; endMs: number
  /** kill9 / kill9-fused only: when the first container started after the restart completed (see run-soak). */
  recoveredMs?: number
}

export interface FaultContext {
  proxy: FaultProxy
  /** A file on the cache's filesystem that may be grown until it is full, then removed. */
  fillerPath: string
  kill9AndRestart(): Promise<void>
  /** kill -9 of stargz-fused (and what it takes to serve again); only in the order when asked for. */
  kill9Fused?(): Promise<void>
  /** Milliseconds since the soak started. */
  now(): number
}

export const DEFAULT_ORDER: FaultKind[] = ['burst-503', 'stall', 'kill9', 'outage', 'redirect-expiry', 'hostile', 'disk-full', 'kill9-fused', 'burst-429']

const BLOB = /\/blobs\/sha256:|^\/_storage\//

/** Grows `path` until its filesystem has no room left. */
async function fillDisk(path: string): Promise<void> {
  const fh = await open(path, 'w')
  try {
    const block = Buffer.alloc(1 << 20)
    for (;;) {
      const s = await statfs(path)
      if (s.bavail * s.bsize < block.length) break
      await fh.write(block)
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e
  } finally {
    await fh.close()
  }
}

export class FaultSchedule {
  readonly markers: FaultMarker[] = []
  /** Blob GETs seen and resets injected by the background fault. */
  blobGets = 0
  resetsInjected = 0
  private debt = 0
  private seen = 0
  private stopped = false
  private readonly loops: Promise<void>[] = []

  constructor(private readonly ctx: FaultContext, private readonly opts: { slotMs: number; outageMs: number; burstCount: number; order?: FaultKind[]; resetFraction?: number }) {}

  start(): void {
    this.loops.push(this.resetLoop(), this.slotLoop())
  }

  /** Stops injecting, undoes whatever fault is active and waits for the loops to end. */
  async stop(): Promise<void> {
    this.stopped = true
    await Promise.all(this.loops)
    this.clearProxy()
    await rm(this.ctx.fillerPath, { force: true })
  }

  /** Markers of faults that overlapped [startMs, endMs]. */
  overlapping(startMs: number, endMs: number): FaultKind[] {
    return this.markers.filter((m) => m.startMs <= endMs && m.endMs >= startMs).map((m) => m.kind)
  }

  private clearProxy(): void {
    const f = this.ctx.proxy.faults
    f.statusBurst = undefined
    f.stallBody = 0
    f.trickleBody = 0
    f.ignoreRange = 0
    f.claimLength = undefined
    f.redirect = false
  }

  private async sleep(ms: number): Promise<void> {
    const until = Date.now() + ms
    while (!this.stopped && Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(250, until - Date.now())))
  }

  private async resetLoop(): Promise<void> {
    const fraction = this.opts.resetFraction ?? 0.1
    while (!this.stopped) {
      const log = this.ctx.proxy.log
      const fresh = log.slice(this.seen)
      this.seen = log.length
      const gets = fresh.filter((r) => r.method === 'GET' && BLOB.test(r.path)).length
      this.blobGets += gets
      this.resetsInjected += fresh.filter((r) => r.fault === 'reset').length
      this.debt += gets * fraction
      while (this.debt >= 1) { this.ctx.proxy.faults.resetMidBody++; this.debt-- }
      if (log.length > 20_000) { this.ctx.proxy.clearLog(); this.seen = 0 }
      await this.sleep(500)
    }
  }

  private async slotLoop(): Promise<void> {
    const order = this.opts.order ?? DEFAULT_ORDER
    for (let i = 0; !this.stopped; i++) {
      await this.sleep(this.opts.slotMs / 2)
      if (this.stopped) break
      const kind = order[i % order.length] as FaultKind
      // Pushed before the fault starts, so a run failing in the middle of it already sees it.
      const marker: FaultMarker = { kind, startMs: this.ctx.now(), endMs: Number.POSITIVE_INFINITY }
      this.markers.push(marker)
      await this.inject(kind)
      marker.endMs = this.ctx.now()
      await this.sleep(this.opts.slotMs / 2)
    }
  }

  private async inject(kind: FaultKind): Promise<void> {
    const f = this.ctx.proxy.faults
    const hold = Math.min(this.opts.outageMs, this.opts.slotMs / 2)
    switch (kind) {
      case 'burst-503': f.statusBurst = { status: 503, count: this.opts.burstCount }; await this.sleep(3000); break
      case 'burst-429': f.statusBurst = { status: 429, count: this.opts.burstCount, retryAfter: '1' }; await this.sleep(3000); break
      case 'stall': f.stallBody = 3; f.trickleBody = 1; await this.sleep(hold); break
      case 'hostile': f.ignoreRange = 3; f.claimLength = { value: String(64 << 20), count: 2 }; await this.sleep(hold); break
      case 'redirect-expiry':
        f.redirect = { expiresParam: 60 }
        for (let t = 0; t < hold && !this.stopped; t += 5000) { await this.sleep(5000); this.ctx.proxy.expireRedirects() }
        break
      case 'outage': f.statusBurst = { status: 503, count: Number.MAX_SAFE_INTEGER, path: /./ }; await this.sleep(this.opts.outageMs); break
      case 'disk-full': await fillDisk(this.ctx.fillerPath); await this.sleep(hold); await rm(this.ctx.fillerPath, { force: true }); break
      case 'kill9': await this.ctx.kill9AndRestart(); break
      case 'kill9-fused': await this.ctx.kill9Fused?.(); break
    }
    this.clearProxy()
  }
}
