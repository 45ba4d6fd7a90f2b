import { raceAbort } from '../task/race-abort.js'

interface Flight<T> {
  promise: Promise<T>
  controller: AbortController
  /** Waiters that can still want the result (a waiter without a signal never stops wanting it). */
  waiting: number
}

/**
 * Merge concurrent identical requests: while a call for `key` is in flight, later callers for the
 * same key wait for its result instead of issuing their own. Each caller keeps its own abort
 * signal: one caller giving up does not fail the others. The shared work gets a signal of its
 * own that aborts when its last waiter has given up (unmount, deadline, background preemption),
 * so an HTTP request nobody waits for any more is cut instead of running to its end.
 */
export class SingleFlight<T> {
  private readonly inflight = new Map<string, Flight<T>>()
  /** Callers that joined an existing flight. */
  shared = 0

  do(key: string, fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted()
    let f = this.inflight.get(key)
    if (f) this.shared++
    else {
      const controller = new AbortController()
      const flight: Flight<T> = { promise: Promise.resolve() as Promise<never>, controller, waiting: 0 }
      flight.promise = fn(controller.signal).finally(() => {
        if (this.inflight.get(key) === flight) this.inflight.delete(key)
      })
      // Waiters that gave up have seen their own rejection; nobody else may be listening.
      flight.promise.catch(() => undefined)
      this.inflight.set(key, flight)
      f = flight
    }
    const flight = f
    flight.waiting++
    if (!signal) return flight.promise
    const onAbort = (): void => {
      if (--flight.waiting > 0) return
      // Nobody wants this any more: cut the work, and let the next caller start afresh rather
      // than join a flight that is being aborted.
      if (this.inflight.get(key) === flight) this.inflight.delete(key)
      flight.controller.abort(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    const done = (): void => signal.removeEventListener('abort', onAbort)
    flight.promise.then(done, done)
    return raceAbort(flight.promise, signal)
  }

  /** Flights in progress (for tests and leak checks). */
  get size(): number { return this.inflight.size }
}
