/**
 * Runs cases [start, end) of one target in a worker thread. The main thread watches the shared
 * progress cell: a case that holds it for more than the hang limit (an infinite loop, or a
 * promise that never settles) gets the worker terminated and counted as a hang.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { caseRng } from './mutate.js'
import { TARGETS } from './targets.js'

export interface WorkerInput { target: string; start: number; end: number; seed: number; progress: SharedArrayBuffer }
export type WorkerMessage =
  | { kind: 'ready' }
  | { kind: 'crash'; index: number; message: string; stack: string }
  | { kind: 'done'; cases: number; typedErrors: number; ok: number }

const input = workerData as WorkerInput
const post = (m: WorkerMessage): void => parentPort?.postMessage(m)
const target = TARGETS.find((t) => t.name === input.target)
if (!target) throw new Error(`unknown target ${input.target}`)
// progress[0]: index of the case running; progress[1]: cases finished.
const progress = new Int32Array(input.progress)
await target.setup()
post({ kind: 'ready' })
let typedErrors = 0
let ok = 0
for (let i = input.start; i < input.end; i++) {
  Atomics.store(progress, 0, i)
  try {
    await target.run(caseRng(input.seed, target.name, i))
    ok++
  } catch (e) {
    if (target.expected(e)) typedErrors++
    else {
      const err = e instanceof Error ? e : new Error(String(e))
      post({ kind: 'crash', index: i, message: `${err.name}: ${err.message}`.slice(0, 400), stack: (err.stack ?? '').split('\n').slice(0, 8).join('\n') })
    }
  }
  Atomics.add(progress, 1, 1)
}
post({ kind: 'done', cases: input.end - input.start, typedErrors, ok })
