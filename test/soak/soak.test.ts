// stargzd-test: e2e (real containerd, runc, FUSE, a tmpfs mount: needs root)
/**
 * The soak in small (issue #17): ~2 minutes of containers from busybox, a big-file reader, a
 * find/stat walker and an image with a bit flipped in the registry's storage, 3 at a time, on
 * stargzd with stargz-fused (a kill -9 of stargzd must not fail a running container's read), while
 * every fault of the bench comes once or twice in short slots (bursts, kill -9 + restart, an
 * outage, the cache filesystem full, stalls, expiring redirects, hostile bodies, 10% resets).
 * Correctness only, never timings: every byte read equals the source, the corrupted layer gives
 * EIO and never bytes, failures only inside outage (EIO) and kill -9 windows, the cache stays
 * within its cap, nothing leaks, and containerd's snapshots and the daemon's agree.
 */
import t from 'tap'
import { runSoak } from '../../harness/soak/run-soak.js'
import { summarize } from '../../harness/soak/report.js'
import { soakVerdict } from '../../harness/soak/verdict.js'

t.setTimeout(600_000)

t.test('soak in small: bytes, EIO on corruption, cap, leaks, store', async (t) => {
  const r = await runSoak({
    minutes: Number(process.env.STARGZD_SOAK_TEST_MINUTES ?? 1.5),
    concurrency: 3,
    images: ['busybox', 'bigfile', 'walker', 'corrupt'],
    scale: 0.4,
    cacheCapMiB: 4,
    cacheFsMiB: 12,
    slotMs: 12_000,
    outageMs: 8_000,
    faults: ['burst-503', 'kill9', 'outage', 'disk-full', 'stall', 'redirect-expiry', 'hostile', 'burst-429'],
    // 5xx/429 are retried until the read deadline (issue #17), so a burst of 20 is invisible.
    burstCount: 20,
    // The outage (8 s) is longer than the read deadline: reads may fail in it (EIO), nowhere else.
    readDeadlineSec: 5,
    fused: true,
    log: (l) => t.comment(l),
  })
  const s = summarize(r)
  t.comment(`runs ${s.runs} ok ${s.ok}; bytes verified ${s.bytesVerified}; failures ${JSON.stringify(s.failuresByKind)}; excused ${JSON.stringify(s.excused)}; cache max ${s.cacheMaxBytes}`)
  t.ok(s.bytesVerified > 0, 'workloads read and verified bytes')
  t.equal(s.wrongBytes, 0, 'no workload read a byte that differs from the source')
  t.equal(s.corruptServed, 0, 'the corrupted layer never returned bytes')
  t.ok(s.corruptEio > 0, 'reading the corrupted layer failed with EIO')
  t.same(s.unexcused.map((u) => `${u.image}@${Math.round(u.startMs / 1000)}s ${u.outcome}: ${u.detail ?? ''}`), [], 'no failures outside the outage (EIO, clear create errors) and creates refused while stargzd restarts')
  t.ok(s.cacheMaxBytes <= s.cacheCapBytes, `cache on disk ${s.cacheMaxBytes} ≤ cap ${s.cacheCapBytes}`)
  t.ok(r.kills > 0, 'the daemon was killed -9 and restarted')
  t.same(r.leaks, { ...r.leaks, containers: 0, tasks: 0, activeSnapshots: 0, extraFuseMounts: 0, mountsAfterStop: [], tempFiles: 0, processes: [] }, 'nothing leaked')
  t.ok(r.storeAgrees, `store: ${r.storeDetail}`)
  t.same(soakVerdict(r, s).problems, [], 'the bench verdict agrees')
})
