/**
 * Runs cases [start, end) of one target in a worker thread. The main thread watches the shared
 * progress cell: a case that holds it for more than the hang limit (an infinite loop, or a
 * promise that never settles) gets the worker terminated and counted as a hang.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { caseRng } from './mutate.js'
import { ALL_TARGETS } from './targets.js'

export interface WorkerInput { target: string; start: number; end: number; seed: number; progress: SharedArrayBuffer }
export type WorkerMessage =
  | { kind: 'ready' }
  | { kind: 'crash'; index: number; message: string; stack: string }
  | { kind: 'done' }

const input = workerData as WorkerInput
const post = (m: WorkerMessage): void => parentPort?.postMessage(m)
const target = ALL_TARGETS.find((t) => t.name === input.target)
if (!target) throw new Error(`unknown target ${input.target}`)
// progress[0]: index of the case running; [1]: cases finished; [2]: returned; [3]: documented errors.
// Shared cells rather than messages, so the counts survive a worker terminated mid-case.
const progress = new Int32Array(input.progress)
await target.setup()
post({ kind: 'ready' })
for (let i = input.start; i < input.end; i++) {
  Atomics.store(progress, 0, i)
  try {
    await target.run(caseRng(input.seed, target.name, i))
    Atomics.add(progress, 2, 1)
  } catch (e) {
    if (target.expected(e)) Atomics.add(progress, 3, 1)
    else {
      const err = e instanceof Error ? e : new Error(String(e))
      post({ kind: 'crash', index: i, message: `${err.name}: ${err.message}`.slice(0, 400), stack: (err.stack ?? '').split('\n').slice(0, 8).join('\n') })
    }
  }
  Atomics.add(progress, 1, 1)
}
post({ kind: 'done' })
