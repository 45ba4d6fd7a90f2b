// stargzd-test: e2e (the real daemon on its root; the snapshotter runs mount(8) checks as root)
/**
 * gRPC and store under load (issue #17), consistency only: 1,000 Prepare/Commit/View/Remove/List
 * calls from 4 clients at once, the daemon killed -9 when half have answered and restarted on the
 * same root. Every call took effect or did not; dirs match records; nothing stays mounted.
 */
import t from 'tap'
import { runGrpcLoad } from '../../harness/soak/grpc-load.js'

t.setTimeout(300_000)

t.test('1,000 concurrent snapshot calls across a kill -9', async (t) => {
  const r = await runGrpcLoad(t, { chains: 200, clients: 4, killAfterFraction: 0.5, log: (l) => t.comment(l) })
  t.comment(`${r.calls} calls, ${r.ok} OK, ${r.failed} failed; store ${r.storeRecords} records, ${r.snapshotDirs} dirs`)
  t.equal(r.calls, r.issued, 'every call sent was answered (OK or an error)')
  t.ok(r.issued > 500, `${r.issued} calls sent (a chain stops at its first failed call)`)
  t.ok(r.killedAfterCalls > 0, 'the daemon was killed mid-load')
  t.ok(r.failed > 0, 'the kill failed some calls')
  t.same(r.inconsistent, [], 'every chain holds the state after its last OK call, or after the call the kill interrupted')
  t.equal(r.snapshotDirs, r.storeRecords, 'one snapshot dir per store record')
  t.equal(r.mountsUnderRoot, 0, 'nothing mounted under the root')
})
