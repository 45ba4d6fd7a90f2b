import t from 'tap'
import { isPreempted } from '../../src/errors.js'
import { PriorityGate } from '../../src/task/priority-gate.js'

const ticks = async (n = 5): Promise<void> => { for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r)) }

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

t.test('background work waits while an on-demand task is in flight', async (t) => {
  const gate = new PriorityGate({ graceMs: 0 })
  const end = gate.beginPriority()
  let started = false
  const bg = gate.runBackground(async () => { started = true; return 7 })
  await ticks()
  t.equal(started, false, 'not started during the priority task')
  t.equal(gate.priorityActive, 1)
  end()
  end() // idempotent
  t.equal(gate.priorityActive, 0)
  t.equal(await bg, 7)
  t.equal(started, true)
})

t.test('a grace period follows the last on-demand task', async (t) => {
  const gate = new PriorityGate({ graceMs: 150 })
  t.teardown(() => gate.close())
  await gate.runPriority(async () => undefined)
  let started = false
  const bg = gate.runBackground(async () => { started = true })
  await ticks()
  t.equal(started, false, 'still inside the grace period')
  await bg
  t.equal(started, true, 'started once it passed')
})

t.test('runPriority ends the task even when it throws', async (t) => {
  const gate = new PriorityGate({ graceMs: 0 })
  await t.rejects(gate.runPriority(async () => { throw new Error('boom') }), /boom/)
  t.equal(gate.priorityActive, 0)
})

t.test('at most backgroundConcurrency background tasks run at once', async (t) => {
  const gate = new PriorityGate({ graceMs: 0, backgroundConcurrency: 2 })
  const holds = [deferred(), deferred(), deferred()]
  let running = 0
  let peak = 0
  const tasks = holds.map((h) => gate.runBackground(async () => {
    running++
    peak = Math.max(peak, running)
    await h.promise
    running--
  }))
  await ticks()
  t.equal(running, 2)
  holds[0]?.resolve()
  await ticks()
  t.equal(running, 2, 'third started when a slot freed')
  holds[1]?.resolve()
  holds[2]?.resolve()
  await Promise.all(tasks)
  t.equal(peak, 2)
})

t.test('an on-demand task preempts running background work, which is run again later', async (t) => {
  const gate = new PriorityGate({ graceMs: 0 })
  const runs: string[] = []
  let first = true
  const bg = gate.runBackground(async (signal) => {
    if (first) {
      first = false
      runs.push('start-1')
      await new Promise<void>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    }
    runs.push('run-2')
    return 'done'
  })
  await ticks()
  const end = gate.beginPriority()
  await ticks()
  t.same(runs, ['start-1'], 'aborted, not yet re-run')
  end()
  t.equal(await bg, 'done')
  t.same(runs, ['start-1', 'run-2'])
  t.equal(gate.stats.preemptions, 1)
})

t.test('a background task that ignores preemption keeps its result', async (t) => {
  const gate = new PriorityGate({ graceMs: 0 })
  const hold = deferred()
  let calls = 0
  let sawAbort: unknown
  const bg = gate.runBackground(async (signal) => {
    calls++
    await hold.promise
    sawAbort = signal.reason
    return 'kept'
  })
  await ticks()
  const end = gate.beginPriority()
  hold.resolve()
  t.equal(await bg, 'kept')
  t.ok(isPreempted(sawAbort))
  t.equal(calls, 1)
  end()
})

t.test('the caller signal stops a waiting or running background task', async (t) => {
  const gate = new PriorityGate({ graceMs: 0 })
  const end = gate.beginPriority()
  const ac = new AbortController()
  let started = false
  const waiting = gate.runBackground(async () => { started = true }, ac.signal)
  ac.abort(new Error('layer closed'))
  await t.rejects(waiting, /layer closed/)
  end()
  await ticks()
  t.equal(started, false)
  const ac2 = new AbortController()
  const running = gate.runBackground((signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))), ac2.signal)
  await ticks()
  ac2.abort(new Error('closing'))
  await t.rejects(running, /closing/, 'not retried: the caller stopped it')
})
