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
    if (!signal) return p
    return raceAbort(p, signal)
  }
}

function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v) },
      (e: unknown) => { signal.removeEventListener('abort', onAbort); reject(e) },
    )
  })
}
