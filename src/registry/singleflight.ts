import { raceAbort } from '../task/race-abort.js'

/**
 * Merge concurrent identical requests: while a call for `key` is in flight, later callers for the
 * same key wait for its result instead of issuing their own. Each caller keeps its own abort
 * signal; the shared work runs without any caller's signal, so one caller giving up does not
 * fail the others.
 */
export class SingleFlight<T> {
  private readonly inflight = new Map<string, Promise<T>>()
  /** Callers that joined an existing flight. */
  shared = 0

  do(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let p = this.inflight.get(key)
    if (p) this.shared++
    else {
      p = fn().finally(() => this.inflight.delete(key))
      this.inflight.set(key, p)
    }
    return raceAbort(p, signal)
  }
}
