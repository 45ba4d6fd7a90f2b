import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry } from '../../harness/registry.js'
import { startFaultProxy, type MultiRangeRefusal } from '../../harness/fault-proxy.js'
import { RegistryClient } from '../../src/registry/client.js'
import { StaticCredentials } from '../../src/registry/credentials.js'
import { FetchError, RegistryTimeoutError } from '../../src/registry/errors.js'
import type { TransportOptions } from '../../src/registry/transport.js'

const reg = await startRegistry()
t.teardown(() => reg.close())
const proxy = await startFaultProxy(reg.url)
t.teardown(() => proxy.close())
const work = await mkdtemp(join(tmpdir(), 'stargz-blob-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

const data = randomBytes(1 << 20)
const ref = `${proxy.host}/blobs/test:v1`
const sleeps: number[] = []

function newClient(t: { teardown(fn: () => unknown): void }, transport: TransportOptions = {}): RegistryClient {
  const c = new RegistryClient({
    plainHttp: true, hostsDir: join(work, 'certs.d'), credentials: new StaticCredentials({}),
    transport: { maxRetries: 3, backoffBaseMs: 1, backoffMaxMs: 5, sleep: async (ms) => { sleeps.push(ms) }, ...transport },
  })
  t.teardown(() => c.close())
  return c
}

const setup = newClient(t)
const { digest } = await setup.pushBlob(ref, data)

function resetFaults(): void {
  Object.assign(proxy.faults, { resetMidBody: 0, statusBurst: undefined, stallBody: 0, refuseMultiRange: false, redirect: false })
  proxy.clearLog()
  proxy.redirectsIssued = 0
  sleeps.length = 0
}

t.beforeEach(() => resetFaults())

t.test('size from HEAD; ranges return the right bytes; counters count', async (t) => {
  const blob = await newClient(t).blob(ref, digest)
  t.equal(blob.size, data.length)
  t.equal(proxy.log[0]?.method, 'HEAD')
  for (const [off, len] of [[0, 1], [12345, 4096], [data.length - 51, 51], [500_000, 100_000]] as const) {
    t.ok((await blob.read(off, len)).equals(data.subarray(off, off + len)), `bytes ${off}+${len}`)
  }
  const s = blob.stats()
  t.equal(s.requests, 5, 'HEAD + four GETs')
  t.equal(s.bytesFetched, 1 + 4096 + 51 + 100_000)
  t.ok((await blob.read(0, data.length)).equals(data), 'whole blob (digest-verified)')
  await t.rejects(blob.read(data.length - 10, 11), /outside blob/)
})

t.test('connection reset mid-body is retried and returns the right bytes', async (t) => {
  const blob = await newClient(t).blob(ref, digest, data.length)
  proxy.faults.resetMidBody = 2
  t.ok((await blob.read(1000, 200_000)).equals(data.subarray(1000, 201_000)))
  t.same(proxy.log.map((l) => l.fault ?? l.status), ['reset', 'reset', 206])
  t.ok(blob.stats().bytesFetched > 200_000, 'the discarded partial bodies are counted')
})

t.test('503 and 429 bursts are retried, honouring Retry-After', async (t) => {
  const blob = await newClient(t).blob(ref, digest, data.length)
  proxy.faults.statusBurst = { status: 503, count: 2, retryAfter: '7' }
  t.ok((await blob.read(0, 10)).equals(data.subarray(0, 10)))
  t.same(proxy.log.map((l) => l.status), [503, 503, 206])
  t.same(sleeps, [7000, 7000], 'slept what Retry-After said')
  resetFaults()
  proxy.faults.statusBurst = { status: 429, count: 1, retryAfter: '100000' }
  t.ok((await blob.read(10, 10)).equals(data.subarray(10, 20)))
  t.same(sleeps, [30_000], 'a huge Retry-After is clamped')
  resetFaults()
  proxy.faults.statusBurst = { status: 500, count: 1 }
  await blob.read(20, 10)
  t.equal(sleeps.length, 1)
  t.ok((sleeps[0] ?? -1) >= 0 && (sleeps[0] ?? 99) <= 1, 'no Retry-After: jittered backoff within the first cap')
})

t.test('persistent 500 fails with an error naming registry, repository, digest and range', async (t) => {
  // Counted retries (retryStatusUntilDeadline off); the default, retrying until the deadline, is
  // test/registry/issue-17-status-retry-deadline.test.ts.
  const blob = await newClient(t, { retryStatusUntilDeadline: false }).blob(ref, digest, data.length)
  proxy.faults.statusBurst = { status: 500, count: 1000 }
  const e = await blob.read(100, 50).then(() => undefined, (err: unknown) => err as Error)
  t.ok(e instanceof FetchError, 'FetchError')
  t.match(e?.message, /HTTP 500/)
  t.match(e?.message, new RegExp(`registry ${proxy.host.replace(/\./g, '\\.')}, repository blobs/test, digest ${digest}, range 100-149`))
  t.equal(proxy.log.length, 4, 'bounded: maxRetries + 1 attempts')
})

t.test('a stalled body times out, is retried, and fails clearly when it never ends', async (t) => {
  const blob = await newClient(t, { bodyTimeoutMs: 300, maxRetries: 1 }).blob(ref, digest, data.length)
  proxy.faults.stallBody = 1
  t.ok((await blob.read(0, 300_000)).equals(data.subarray(0, 300_000)), 'one stall, then success')
  proxy.faults.stallBody = 10
  const e = await blob.read(300_000, 300_000).then(() => undefined, (err: unknown) => err as Error)
  t.ok(e instanceof RegistryTimeoutError, 'RegistryTimeoutError after retries')
  t.match(e?.message, /failed after 2 attempts/)
  t.match(e?.message, /range 300000-599999/)
})

t.test('multi-range: one request, multipart answer, right bytes', async (t) => {
  const blob = await newClient(t).blob(ref, digest, data.length)
  const ranges = [{ offset: 900_000, length: 10 }, { offset: 5, length: 100 }, { offset: 50, length: 100 }, { offset: 400_000, length: 65536 }, { offset: 7, length: 0 }]
  const got = await blob.readRanges(ranges)
  ranges.forEach((r, i) => t.ok(got[i]?.equals(data.subarray(r.offset, r.offset + r.length)), `range ${i}`))
  t.equal(proxy.log.length, 1, 'one request')
  t.equal(proxy.log[0]?.range, 'bytes=5-149,400000-465535,900000-900009', 'sorted and overlaps merged')
  t.equal(blob.stats().multiRangeUnsupported, false)
})

for (const mode of ['400', '416', 'full', 'first'] as MultiRangeRefusal[]) {
  t.test(`multi-range refused (${mode}): falls back to single ranges and remembers`, async (t) => {
    const blob = await newClient(t).blob(ref, digest, data.length)
    proxy.faults.refuseMultiRange = mode
    const ranges = [{ offset: 10, length: 20 }, { offset: 1000, length: 30 }, { offset: 700_000, length: 40 }]
    for (let round = 0; round < 2; round++) {
      const got = await blob.readRanges(ranges)
      ranges.forEach((r, i) => t.ok(got[i]?.equals(data.subarray(r.offset, r.offset + r.length)), `round ${round} range ${i}`))
    }
    t.equal(blob.stats().multiRangeUnsupported, true)
    const multi = proxy.log.filter((l) => l.range?.includes(','))
    t.equal(multi.length, 1, 'multi-range tried once only')
    // 'full' (200 with the whole blob) is cut, not buffered: 1 MiB for 90 bytes is not worth it.
    t.equal(proxy.log.filter((l) => l.range && !l.range.includes(',')).length, 6, 'then single ranges')
  })
}

t.test('singleflight: identical concurrent reads share one request', async (t) => {
  const blob = await newClient(t).blob(ref, digest, data.length)
  const reads = await Promise.all(Array.from({ length: 10 }, () => blob.read(4096, 8192)))
  for (const r of reads) t.ok(r.equals(data.subarray(4096, 4096 + 8192)))
  t.equal(proxy.log.length, 1)
  t.equal(blob.stats().requests, 1)
  t.equal(blob.stats().deduplicated, 9)
  const multi = await Promise.all([blob.readRanges([{ offset: 0, length: 5 }, { offset: 100, length: 5 }]), blob.readRanges([{ offset: 100, length: 5 }, { offset: 0, length: 5 }])])
  t.ok(multi[1]?.[0]?.equals(data.subarray(100, 105)))
  t.equal(proxy.log.length, 2, 'the same range set in another order shares too')
  const ac = new AbortController()
  const p1 = blob.read(0, 1000, ac.signal)
  const p2 = blob.read(0, 1000)
  ac.abort(new Error('caller gave up'))
  await t.rejects(p1, /caller gave up/)
  t.ok((await p2).equals(data.subarray(0, 1000)), 'one caller aborting does not fail the other')
})

t.test('redirects to storage: reused until refused, then re-resolved', async (t) => {
  const blob = await newClient(t).blob(ref, digest, data.length)
  proxy.faults.redirect = {}
  t.ok((await blob.read(0, 100)).equals(data.subarray(0, 100)))
  t.ok((await blob.read(100, 100)).equals(data.subarray(100, 200)))
  t.ok((await blob.readRanges([{ offset: 0, length: 1 }, { offset: 5000, length: 1 }]))[1]?.equals(data.subarray(5000, 5001)))
  t.equal(proxy.redirectsIssued, 1, 'one redirect, storage URL reused')
  t.equal(proxy.log.filter((l) => l.path.startsWith('/_storage/')).length, 3)
  proxy.expireRedirects()
  t.ok((await blob.read(200, 100)).equals(data.subarray(200, 300)), 'still the right bytes after expiry')
  t.ok(proxy.log.some((l) => l.status === 403), 'storage answered 403')
  t.equal(proxy.redirectsIssued, 2, 'and the client went back to the registry once for a new URL')
  await blob.read(300, 100)
  t.equal(proxy.redirectsIssued, 2, 'the new URL is reused in turn')
})

t.test('a redirect URL whose signature says it expired is not reused', async (t) => {
  const blob = await newClient(t).blob(ref, digest, data.length)
  proxy.faults.redirect = { expiresParam: 1 }
  await blob.read(0, 10)
  await blob.read(10, 10)
  t.equal(proxy.redirectsIssued, 2)
  t.equal(proxy.log.filter((l) => l.status === 403).length, 0, 'never tried a stale URL')
})
