/**
 * Test sources and blobs for the read path (reader and layer tests).
 */
import { createHash } from 'node:crypto'
import { buildMiniEstargz, type MiniBlob, type MiniFile } from '../../harness/mini-estargz.js'
import { LANDMARK_CONTENTS, PREFETCH_LANDMARK } from '../../src/estargz/types.js'

export function sha(b: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function prng(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    b[i] = x & 0xff
  }
  return b
}

export interface RangeRecord { offset: number; length: number; signal: boolean }

/**
 * A RangeSource over a buffer that records every request, can fail the next N reads, and can
 * hold reads until released (to observe what happens while a fetch is in flight).
 */
export class CountingSource {
  readonly requests: RangeRecord[] = []
  failNext = 0
  private held: Array<() => void> | undefined
  closed = 0
  constructor(readonly buf: Buffer) {}
  get size(): number { return this.buf.length }
  get reads(): number { return this.requests.length }
  get bytesRead(): number { return this.requests.reduce((n, r) => n + r.length, 0) }

  /** Hold every read from now until `release()`. */
  hold(): void { this.held ??= [] }
  release(): void {
    const h = this.held
    this.held = undefined
    for (const f of h ?? []) f()
  }
  get waiting(): number { return this.held?.length ?? 0 }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.requests.push({ offset, length, signal: signal !== undefined })
    if (this.held) {
      // A held read still honours its signal, like a real HTTP request would.
      await new Promise<void>((resolve, reject) => {
        this.held?.push(resolve)
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true })
      })
    }
    signal?.throwIfAborted()
    if (this.failNext > 0) {
      this.failNext--
      throw new Error(`injected failure reading [${offset}, +${length})`)
    }
    if (offset < 0 || offset + length > this.buf.length) throw new Error(`read [${offset}, +${length}) outside blob of ${this.buf.length}`)
    return Buffer.from(this.buf.subarray(offset, offset + length))
  }

  async close(): Promise<void> { this.closed++ }
}

/** CountingSource plus multi-range reads (like the registry blob), counting one request per call. */
export class MultiRangeCountingSource extends CountingSource {
  readonly multi: Array<Array<{ offset: number; length: number }>> = []
  async readRanges(ranges: ReadonlyArray<{ offset: number; length: number }>): Promise<Buffer[]> {
    this.multi.push(ranges.map((r) => ({ ...r })))
    return ranges.map((r) => Buffer.from(this.buf.subarray(r.offset, r.offset + r.length)))
  }
}

/**
 * A blob with `.prefetch.landmark` (content 0x0f, as the reference writes it) after the
 * prioritized files, then the rest.
 */
export function buildLandmarkBlob(prioritized: MiniFile[], rest: MiniFile[]): MiniBlob {
  return buildMiniEstargz([...prioritized, { name: PREFETCH_LANDMARK, data: Buffer.from([LANDMARK_CONTENTS]) }, ...rest])
}

/** A pino-like logger that records calls. */
export function recordingLogger(): { lines: Array<{ level: string; msg: string | undefined; obj: Record<string, unknown> }>; logger: import('../../src/reader/logger.js').Logger } {
  const lines: Array<{ level: string; msg: string | undefined; obj: Record<string, unknown> }> = []
  const mk = (bindings: Record<string, unknown>): import('../../src/reader/logger.js').Logger => {
    const at = (level: string) => (obj: object, msg?: string): void => { lines.push({ level, msg, obj: { ...bindings, ...(obj as Record<string, unknown>) } }) }
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (b) => mk({ ...bindings, ...b }) }
  }
  return { lines, logger: mk({}) }
}
