// Node 20 does not apply `--import tsx` to a worker's own entry module: register tsx here, then
// load the TypeScript worker.
import { register } from 'tsx/esm/api'
register()
await import('./worker.ts')
