/**
 * On-demand reads before background work, as in the reference's task.BackgroundTaskManager:
 * - a background task starts only when no on-demand ("priority") task is running and none has
 *   finished within the last `graceMs` (a burst of reads from a starting container is one busy
 *   period, not many short idle gaps);
 * - at most `backgroundConcurrency` background tasks run at once;
 * - a priority task that starts while background tasks run aborts their signal (preemption);
 *   a task that then fails is run again once the gate is idle. A task that ignores the signal
 *   and completes keeps its result.
 * One gate is meant to be shared by every layer of the daemon: a read on any layer pauses
 * background fetching on all of them, since they share the link and the CPU.
 */
import { UnavailableError, isPreempted } from '../errors.js'
import { LIBRARY_DEFAULTS } from '../config/defaults.js'

export interface PriorityGateOptions {
  /** Quiet period after the last priority task before background work resumes. Default: LIBRARY_DEFAULTS.backgroundGraceMs. */
  graceMs?: number
  /** Background tasks running at once. Default 2 (the reference's default too). */
  backgroundConcurrency?: number
  /** Abort running background tasks when a priority task starts. Default true. */
  preempt?: boolean
}

/** The reason a background task's signal is aborted when a priority task starts. */
/** The abort reason of a preempted background task (isPreempted tells it apart). */
export function preemptedError(): UnavailableError {
  return new UnavailableError('background task preempted by an on-demand read', { preempted: true })
}

export class PriorityGate {
  private readonly graceMs: number
  private readonly concurrency: number
  private readonly preempt: boolean
  private active = 0
  private lastDoneAt = Number.NEGATIVE_INFINITY
  private running = 0
  private readonly waiters = new Set<() => void>()
  private readonly runningAborts = new Set<AbortController>()
  private timer: NodeJS.Timeout | undefined
  /** Counters for tests and metrics. */
  readonly stats = { priorityTasks: 0, backgroundTasks: 0, preemptions: 0 }

  constructor(opts: PriorityGateOptions = {}) {
    this.graceMs = Math.max(0, opts.graceMs ?? LIBRARY_DEFAULTS.backgroundGraceMs)
    this.concurrency = Math.max(1, opts.backgroundConcurrency ?? LIBRARY_DEFAULTS.backgroundConcurrency)
    this.preempt = opts.preempt ?? true
  }

  /** Priority tasks in flight. */
  get priorityActive(): number {
    return this.active
  }

  /** Mark the start of an on-demand task; call the returned function (once) when it ends. */
  beginPriority(): () => void {
    this.active++
    this.stats.priorityTasks++
    if (this.preempt && this.runningAborts.size > 0) {
      for (const ac of this.runningAborts) {
        if (!ac.signal.aborted) { this.stats.preemptions++; ac.abort(preemptedError()) }
      }
    }
    let done = false
    return () => {
      if (done) return
      done = true
      this.active--
      this.lastDoneAt = performance.now()
      this.wake()
    }
  }

  async runPriority<T>(fn: () => Promise<T>): Promise<T> {
    const end = this.beginPriority()
    try {
      return await fn()
    } finally {
      end()
    }
  }

  private canStartBackground(): boolean {
    return this.active === 0 && this.running < this.concurrency && performance.now() - this.lastDoneAt >= this.graceMs
  }

  private wake(): void {
    if (this.active > 0 || this.waiters.size === 0) return
    const wait = this.graceMs - (performance.now() - this.lastDoneAt)
    if (wait > 0) {
      if (this.timer === undefined) {
        this.timer = setTimeout(() => { this.timer = undefined; this.wake() }, Math.ceil(wait))
      }
      return
    }
    for (const w of [...this.waiters]) w()
  }

  /** Resolves when a background task may start; rejects if `signal` aborts first. */
  private waitTurn(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!this.canStartBackground()) return
        this.waiters.delete(check)
        signal?.removeEventListener('abort', onAbort)
        this.running++
        resolve()
      }
      const onAbort = (): void => {
        this.waiters.delete(check)
        reject(signal?.reason)
      }
      if (signal?.aborted) { reject(signal.reason); return }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiters.add(check)
      check()
      if (this.waiters.has(check)) this.wake()
    })
  }

  /**
   * Run `fn` as background work: after the gate is idle, within the concurrency limit, again
   * after each preemption. `signal` (e.g. the layer closing) stops waiting and aborts `fn`.
   */
  async runBackground<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (;;) {
      await this.waitTurn(signal)
      const ac = new AbortController()
      const onOuter = (): void => ac.abort(signal?.reason)
      signal?.addEventListener('abort', onOuter, { once: true })
      this.runningAborts.add(ac)
      this.stats.backgroundTasks++
      try {
        return await fn(ac.signal)
      } catch (e) {
        const preempted = ac.signal.aborted && isPreempted(ac.signal.reason) && !signal?.aborted
        if (!preempted) throw e
      } finally {
        this.runningAborts.delete(ac)
        signal?.removeEventListener('abort', onOuter)
        this.running--
        this.wakeBackground()
      }
    }
  }

  /** A background slot freed up: let the next waiter check. */
  private wakeBackground(): void {
    if (this.canStartBackground()) for (const w of [...this.waiters]) w()
  }

  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }
}
