/**
 * One direction of an emulated long-haul TCP path: every chunk read from `src` is written to `dst`
 * `delayMs` after it arrived, in order, without limiting throughput.
 *
 * Why not `setTimeout(() => dst.write(chunk), delayMs)` per chunk: that works for order (timers of
 * equal delay fire in order) but it never pushes back, so a slow reader lets the queue grow without
 * bound; and one timer per 64 KiB chunk at 25 MB/s is ~400 timers/s of churn. Instead each chunk is
 * stamped with its due time and put on a FIFO; a single timer is armed for the head, and when it
 * fires every chunk that is due is written in one go. Throughput is therefore whatever the source
 * delivers (the delay only shifts the stream in time), as on a real link where bandwidth and
 * latency are independent.
 *
 * Back-pressure: at most `highWaterBytes` may be in flight; past that the source is paused until
 * the queue has halved and `dst` has drained. The bound must exceed rate × delay (the
 * bandwidth-delay product: 25 MB/s × 10 ms = 250 kB for 200 Mbit/s and 20 ms RTT), or the line
 * itself would cap throughput; the default, 8 MiB, allows ~3 Gbit/s at 10 ms one way.
 */
import type { Duplex } from 'node:stream'

export interface DelayLineOptions {
  delayMs: number
  highWaterBytes?: number
  /** No chunk is delivered before this time (performance.now() ms) + delayMs; for handshakes. */
  notBefore?: number
  /** Called with the size of each chunk as it is delivered. */
  onDeliver?: (bytes: number) => void
}

/** A chunk, or `null` for the source's end (FIN), which travels the same delay as the data. */
interface Pending { chunk: Buffer | null; due: number }

/**
 * Timers have whole-millisecond resolution against a loop clock that can lag real time, so a timer
 * may fire a little early or ~1 ms late, and re-arming for a sub-millisecond rest costs a whole
 * extra millisecond. Sending what is due within the next SLACK_MS keeps the error near ±0.5 ms
 * instead of always late (+1–2 ms per round trip, 5–10% of a 20 ms RTT).
 */
const SLACK_MS = 1

export class DelayLine {
  readonly #src: Duplex
  readonly #dst: Duplex
  readonly #delayMs: number
  readonly #highWater: number
  readonly #notBefore: number
  readonly #onDeliver: ((bytes: number) => void) | undefined
  #queue: Pending[] = []
  #head = 0
  #queuedBytes = 0
  #timer: NodeJS.Timeout | undefined
  #closed = false
  #pausedByUs = false

  constructor(src: Duplex, dst: Duplex, opts: DelayLineOptions) {
    if (!(opts.delayMs >= 0)) throw new RangeError(`delayMs must be >= 0, got ${opts.delayMs}`)
    this.#src = src
    this.#dst = dst
    this.#delayMs = opts.delayMs
    this.#highWater = opts.highWaterBytes ?? 8 * 1024 * 1024
    this.#notBefore = opts.notBefore ?? 0
    this.#onDeliver = opts.onDeliver
    src.on('data', (chunk: Buffer) => this.#push(chunk))
    src.on('end', () => this.#push(null))
    dst.on('drain', () => this.#maybeResume())
  }

  /** Bytes received but not yet delivered. */
  get queuedBytes(): number {
    return this.#queuedBytes
  }

  /** Drop whatever is queued and stop; the owner destroys the sockets. */
  close(): void {
    this.#closed = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#queue = []
    this.#head = 0
    this.#queuedBytes = 0
  }

  #push(chunk: Buffer | null): void {
    if (this.#closed) return
    const now = performance.now()
    this.#queue.push({ chunk, due: Math.max(now, this.#notBefore) + this.#delayMs })
    this.#queuedBytes += chunk?.length ?? 0
    // Nothing ahead of it and already due (a zero delay): no timer, which would cost >= 1 ms.
    if (this.#timer === undefined && this.#head === this.#queue.length - 1 && this.#queue[this.#head]!.due <= now) {
      this.#flush()
      return
    }
    if (this.#queuedBytes >= this.#highWater && !this.#pausedByUs) {
      this.#pausedByUs = true
      this.#src.pause()
    }
    this.#arm()
  }

  #arm(): void {
    if (this.#timer || this.#closed || this.#head >= this.#queue.length) return
    const head = this.#queue[this.#head] as Pending
    const wait = Math.max(0, Math.floor(head.due - performance.now()))
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#flush()
    }, wait)
  }

  #flush(): void {
    if (this.#closed) return
    const limit = performance.now() + SLACK_MS
    while (this.#head < this.#queue.length) {
      const p = this.#queue[this.#head] as Pending
      if (p.due > limit) break
      this.#head++
      if (p.chunk === null) {
        if (!this.#dst.destroyed) this.#dst.end()
        continue
      }
      this.#queuedBytes -= p.chunk.length
      if (!this.#dst.destroyed) this.#dst.write(p.chunk)
      this.#onDeliver?.(p.chunk.length)
    }
    // Compact now and then rather than shift() per chunk (O(n) each).
    if (this.#head > 1024 || this.#head === this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#head = 0
    }
    this.#maybeResume()
    this.#arm()
  }

  #maybeResume(): void {
    if (!this.#pausedByUs || this.#closed) return
    if (this.#queuedBytes > this.#highWater / 2 || this.#dst.writableNeedDrain) return
    this.#pausedByUs = false
    this.#src.resume()
  }
}
