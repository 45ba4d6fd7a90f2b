/**
 * gRPC and store under load (issue #17): 1,000 concurrent Prepare/Commit/View/Remove/List calls
 * from several clients against the real daemon, kill -9 once --kill-at of them have answered, restart; then
 * consistency (every call took effect or did not) and p50/p99 latency per method.
 *
 *   npm run bench:grpc-load [-- --chains 200 --clients 4 --kill-at 0.9] [--record]
 * (--kill-at: the fraction of calls answered before the kill; late, so every method has OK samples)
 */
import { parseArgs } from 'node:util'
import { appendFile } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { runGrpcLoad } from '../harness/soak/grpc-load.js'

const { values: args } = parseArgs({ options: { chains: { type: 'string', default: '200' }, clients: { type: 'string', default: '4' }, 'kill-at': { type: 'string', default: '0.9' }, record: { type: 'boolean', default: false } } })
const teardowns: (() => unknown)[] = []
const load0 = loadavg()[0] ?? 0
let code = 1
try {
  const r = await runGrpcLoad({ teardown: (fn) => { teardowns.push(fn) } }, { chains: Number(args.chains), clients: Number(args.clients), killAfterFraction: Number(args['kill-at']), log: (l) => console.error(l) })
  const ms = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : 'n/a (none answered OK)')
  const rows = Object.entries(r.latency).map(([m, l]) => `| ${m} | ${l.n} | ${ms(l.p50)} | ${ms(l.p99)} |`)
  const pass = r.inconsistent.length === 0 && r.snapshotDirs === r.storeRecords && r.mountsUnderRoot === 0
  const section = [
    `## gRPC and store under load (issue #17) — ${new Date().toISOString().slice(0, 16)}Z, load average ${load0.toFixed(1)}`,
    '',
    `\`npm run bench:grpc-load -- --chains ${args.chains} --clients ${args.clients} --kill-at ${args['kill-at']}\`: ${r.calls} calls of ${r.issued} sent answered (${r.ok} OK, ${r.failed} failed by the kill -9 after ${r.killedAfterCalls} answers). ` +
    `Consistency: **${pass ? 'pass' : 'FAIL'}** — ${r.inconsistent.length} chains in a state no call sequence explains; ${r.storeRecords} store records, ${r.snapshotDirs} snapshot dirs, ${r.mountsUnderRoot} mounts under the root.`,
    '',
    '| method | OK calls | p50 ms | p99 ms |', '|---|---|---|---|', ...rows, '',
  ].join('\n')
  console.log(section)
  for (const i of r.inconsistent.slice(0, 20)) console.log(i)
  if (args.record) await appendFile(join(fileURLToPath(new URL('.', import.meta.url)), 'RESULTS.md'), '\n' + section)
  code = pass ? 0 : 1
} finally {
  for (const fn of teardowns.reverse()) await Promise.resolve().then(fn).catch(() => undefined)
}
process.exitCode = code
