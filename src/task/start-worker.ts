/**
 * Start a worker thread from a module next to the caller. The compiled build (dist/, what the
 * daemon runs) starts `<name>.js`. Running from source (tsx, tests), the entry is `<name>.ts`;
 * tsx's `--import tsx` hooks are not active in worker threads on Node 20, so a two-line
 * bootstrap registers tsx in the worker first (resolved from this file, so it is the same tsx
 * the parent runs with; under tap's TypeScript loader the worker inherits that loader and the
 * registration is harmless). One launcher for every pool (decode-worker, toc-build-worker).
 */
import { Worker } from 'node:worker_threads'

/** `callerUrl` is the caller's import.meta.url; `name` the entry's file name without extension. */
export function startModuleWorker(callerUrl: string, name: string): Worker {
  if (!callerUrl.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, callerUrl))
  const entry = new URL(`./${name}.ts`, callerUrl).href
  const tsx = import.meta.resolve('tsx/esm/api')
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}) })`
  return new Worker(boot, { eval: true })
}
